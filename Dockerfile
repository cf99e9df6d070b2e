# The runstream worker (and CLI) image used by docker-compose.yml, installed from uv.lock.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_PROJECT_ENVIRONMENT=/opt/runstream UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /app
# uv itself, hash-pinned to the version in uv.lock.
COPY tools/uv.requirements.txt /tmp/uv.requirements.txt
RUN pip install --no-deps --require-hashes -r /tmp/uv.requirements.txt
# The locked dependencies first (a layer that changes only with the lock), then the project.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --locked --no-install-project --no-cache --extra stream --extra grafana
COPY producer ./producer
COPY stream ./stream
COPY schemas ./schemas
COPY deploy/grafana/runstream_grafana ./deploy/grafana/runstream_grafana
RUN uv sync --locked --no-editable --no-cache --extra stream --extra grafana && useradd --create-home runstream
ENV PATH=/opt/runstream/bin:$PATH
USER runstream
ENTRYPOINT ["runstream"]
CMD ["worker"]
