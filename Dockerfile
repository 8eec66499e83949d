# shoal in one image: the command chooses the part (`shoal manager ...`, `shoal agent ...`,
# or any other `shoal` verb). Used by docker-compose.test.yml.
#
# BASE_IMAGE is any Debian-like image with Python 3.11+ and its venv module: the official
# python:3.11-slim by default (where a registry is reachable, nothing else is needed), or
# shoal-base:bookworm, the debootstrap root that scripts/build-images imports where none is.
#
#   docker build -t shoal:latest .
#   docker build -t shoal:latest --build-arg BASE_IMAGE=shoal-base:bookworm .
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/shoal/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# The dependencies first, read from pyproject.toml: this layer is rebuilt only when they
# change, not on every change to the source. Wheels in .cache/images/wheels (made on the
# host by scripts/build-images, for engines whose containers cannot reach PyPI) are used
# when present; with --build-arg PIP_OFFLINE=1 they are the only source.
ARG PIP_OFFLINE=""
WORKDIR /src
COPY pyproject.toml .cache/images/wheel[s] /wheels/
RUN mv /wheels/pyproject.toml /src/ \
 && python3 -m venv /opt/shoal \
 && python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
      > /tmp/requirements.txt \
 && /opt/shoal/bin/pip install -q ${PIP_OFFLINE:+--no-index} --find-links /wheels \
      -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

COPY README.md ./
COPY discovery ./discovery
COPY scheduler ./scheduler
COPY controlplane ./controlplane
RUN /opt/shoal/bin/pip install -q ${PIP_OFFLINE:+--no-index} --find-links /wheels --no-deps . \
 && rm -rf /src /wheels \
 && shoal --version

WORKDIR /
ENTRYPOINT ["shoal"]
CMD ["--help"]
