# One image for every component: `broen serve gateway|participant|consent|messaging`,
# and `broen migrate` / `broen admin keys init` for the one-shot jobs in docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml ./
COPY shared ./shared
COPY services ./services
COPY gateway ./gateway
COPY broen_cli ./broen_cli
RUN pip install . && rm -rf /src

# Unprivileged user; the keys directory belongs to it so a fresh named volume mounted
# there inherits the ownership (key files are written 0600).
RUN useradd --system --uid 10001 --home-dir /var/lib/broen --create-home broen \
    && mkdir -p /var/lib/broen/keys \
    && chown -R broen /var/lib/broen
USER broen
WORKDIR /var/lib/broen
ENV BROEN_KEYS_DIR=/var/lib/broen/keys

ENTRYPOINT ["broen"]
CMD ["serve", "gateway"]
