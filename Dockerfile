# The operator image: `make image`. The project is built into a wheel in one stage and installed from
# it in the next, so the image holds no sources or build tools.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
# No bytecode written at run time (the root filesystem is read-only), logs unbuffered.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=wheel /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl \
    && rm -rf /wheels \
    && python -m compileall -q /usr/local/lib/python3.11/site-packages \
    && groupadd --gid 65532 scaleset \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin scaleset
USER 65532:65532
WORKDIR /tmp
# Health (kopf), scheduled events, metrics.
EXPOSE 8080 8090 9090
ENTRYPOINT ["scaleset", "operator"]
CMD ["--all-namespaces"]
