# A fabric instance (materializer + gRPC query service), for docker-compose.yml.
# The wheel is built where a C compiler is (the native modules, setup.py); the image itself has none.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY fabric ./fabric
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
WORKDIR /opt/cdc-fabric
COPY --from=build /wheels /wheels
COPY connectors ./connectors
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
# State lives in a volume per instance: an instance that restarts with its stores resumes.
ENV FABRIC_STATE_DIR=/var/lib/cdc-fabric
VOLUME /var/lib/cdc-fabric
EXPOSE 27070
ENTRYPOINT ["fabric"]
CMD ["serve"]
