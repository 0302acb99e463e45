# Stand-in for the official `postgres` image where it cannot be pulled (the
# compose check builds it from Debian's own PostgreSQL). It keeps the interface
# docker-compose.yml relies on: POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB
# create the superuser and database on first start, data in
# /var/lib/postgresql/data, password login over the network, trust over the
# local socket (pg_isready, pg_dump, pg_restore through `exec`).
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data \
    && install -d -o postgres -g postgres -m 2775 /var/run/postgresql
COPY --chmod=0755 postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
USER postgres
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
CMD ["postgres"]
