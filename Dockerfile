# rallypoint's workers and CLI in one image: `docker build -t rallypoint .`
#   docker run --rm rallypoint worker tasks      (any `rally` command: the entrypoint is rally)
# Configuration is the RALLY_* environment variables (README.md, docs/operations.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# only what `pip install .` reads: the build metadata and the three packages
COPY pyproject.toml README.md ./
COPY contracts ./contracts
COPY broker ./broker
COPY workers ./workers
RUN pip install . \
    && useradd --create-home --uid 10001 rally

# not root; the home is the working directory, so the default SQLite store (./var) is writable
USER rally
WORKDIR /home/rally
ENV RALLY_LOG_FORMAT=json

ENTRYPOINT ["rally"]
CMD ["worker", "all"]
