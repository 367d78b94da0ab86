# The whole stack in one image: gateway on $PORT (7860), auth and task services on loopback.
# Spaces build it on the official Python image; the test suite (tests/docker/) passes a
# stand-in made from Debian's packages, as no image registry is reachable where it runs.
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Spaces run containers as uid 1000, which must own the app directory and data/ (the SQLite
# default unless persistent storage is mounted at /data). WORKDIR would create it as root.
RUN useradd --create-home --uid 1000 user \
    && install -d -o user -g user /home/user/app /home/user/app/data
WORKDIR /home/user/app

# How pip reaches the package index, for builds on machines that reach it through a mirror
# or a proxy with its own CA. Unset (pip's defaults) unless given with --build-arg; being
# build arguments, they stay out of the image's environment.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
ARG PIP_CERT
ARG PIP_DEFAULT_TIMEOUT

# Dependencies first: this layer stays cached until requirements.txt changes.
COPY --chown=user:user requirements.txt .
RUN pip install -r requirements.txt

COPY --chown=user:user . .

USER user
ENV HOME=/home/user \
    PORT=7860
EXPOSE 7860

# Liveness only: a database outage must not mark the container unhealthy (an auto-healer
# restarting it could not help); `/health` says what is down.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "app.py", "--healthcheck"]

CMD ["python", "app.py"]
