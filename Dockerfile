# The runstream worker (and CLI) image used by docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY producer ./producer
COPY stream ./stream
COPY schemas ./schemas
RUN pip install ".[stream]" && useradd --create-home runstream
USER runstream
ENTRYPOINT ["runstream"]
CMD ["worker"]
