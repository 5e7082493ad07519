# The operator image: `make image`. The project is built into a wheel in one stage and installed from
# it in the next, so the image holds no sources or build tools.
# The base image by digest: python:3.11-slim-bookworm's multi-platform index, as the Docker Official
# Images publish it (docker-library/repo-info, repos/python/remote/3.11-slim-bookworm.md: Python
# 3.11.16 with setuptools 79.0.1). A new base is a new digest, reviewed like any other change.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:fe556eaffd0d96abd8685b83bb8a69addd0dc730fa193669a7df0d49ddcfac02

FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
# Built with the base image's own setuptools: nothing is fetched to build.
RUN pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
# No bytecode written at run time (the root filesystem is read-only), logs unbuffered.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The operator's dependencies at the exact versions and hashes of the lock (without the sim extra:
# no embedded cluster in the image), then the wheel alone.
COPY requirements.lock /tmp/requirements.lock
COPY --from=wheel /wheels /wheels
RUN pip install --no-cache-dir --require-hashes --no-deps -r /tmp/requirements.lock \
    && pip install --no-cache-dir --no-deps /wheels/*.whl \
    && rm -rf /wheels /tmp/requirements.lock \
    && python -m compileall -q /usr/local/lib/python3.11/site-packages \
    && groupadd --gid 65532 scaleset \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin scaleset
USER 65532:65532
WORKDIR /tmp
# Health (kopf), scheduled events, metrics.
EXPOSE 8080 8090 9090
ENTRYPOINT ["scaleset", "operator"]
CMD ["--all-namespaces"]
