# Stand-in for the official `redis` image where it cannot be pulled (the compose
# check builds it from Debian's own Redis). docker-compose.yml passes the whole
# server command line; data (the append-only file) lives in /data.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && install -d -o redis -g redis -m 0750 /data
WORKDIR /data
USER redis
EXPOSE 6379
CMD ["redis-server", "--protected-mode", "no"]
