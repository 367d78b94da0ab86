# The whole stack in one image: gateway on $PORT (7860), auth and task services on loopback.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Spaces run containers as uid 1000, which must own the app directory and data/ (the SQLite
# default unless persistent storage is mounted at /data). WORKDIR would create it as root.
RUN useradd --create-home --uid 1000 user \
    && install -d -o user -g user /home/user/app /home/user/app/data
WORKDIR /home/user/app

# Dependencies first: this layer stays cached until requirements.txt changes.
COPY --chown=user:user requirements.txt .
RUN pip install -r requirements.txt

COPY --chown=user:user . .

USER user
ENV HOME=/home/user \
    PORT=7860
EXPOSE 7860

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "app.py", "--healthcheck"]

CMD ["python", "app.py"]
