# The service's image: the project and its pinned dependencies, run by a user without privileges.
# Build and run it with the PostgreSQL, Redis and load balancer around it: docker compose up --build

# Build stage: pip and the build backend stay here; the image gets only the finished venv.
FROM python:3.11.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY domain ./domain
COPY application ./application
COPY adapters ./adapters
COPY entrypoints ./entrypoints
# The versions the tests ran with (constraints.txt); the run dependencies only, no test tools.
RUN /opt/venv/bin/pip install -c constraints.txt .

FROM python:3.11.11-slim-bookworm
RUN groupadd --system --gid 10001 experiments \
    && useradd --system --uid 10001 --gid experiments --home-dir /app --no-create-home experiments \
    && mkdir -p /app/data \
    && chown experiments:experiments /app/data
COPY --from=build /opt/venv /opt/venv
# HOST=0.0.0.0: inside a container, 127.0.0.1 would be reachable from nowhere else.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=8000
# The default DATABASE_URL (sqlite:///./data/experiments.db) lands in /app/data: mount a volume
# there to keep a SQLite database; docker-compose.yml uses PostgreSQL instead.
WORKDIR /app
USER experiments
EXPOSE 8000
# The slim image has no curl: Python's urllib asks /health, and a 503 or no answer fails.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=4)"]
CMD ["python", "-m", "entrypoints", "serve"]
