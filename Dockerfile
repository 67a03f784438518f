# A fabric instance (materializer + gRPC query service), for docker-compose.yml.
FROM python:3.11-slim
WORKDIR /opt/cdc-fabric
COPY pyproject.toml README.md ./
COPY fabric ./fabric
COPY connectors ./connectors
RUN pip install --no-cache-dir .
# State lives in a volume per instance: an instance that restarts with its stores resumes.
ENV FABRIC_STATE_DIR=/var/lib/cdc-fabric
VOLUME /var/lib/cdc-fabric
EXPOSE 27070
ENTRYPOINT ["fabric"]
CMD ["serve"]
