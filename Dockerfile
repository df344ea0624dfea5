# qualitygate-exporter: `docker build -t qualitygate-exporter .`
# Runs as an unprivileged user, listens on the default port 9916, keeps its state in
# /var/lib/qualitygate (mount a volume there) and reads its tracker from /etc/qualitygate/tracker.yml.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels qualitygate-exporter \
    && rm -rf /wheels \
    && groupadd --system --gid 10001 qualitygate \
    && useradd --system --uid 10001 --gid qualitygate --home-dir /var/lib/qualitygate --shell /usr/sbin/nologin qualitygate \
    && mkdir -p /var/lib/qualitygate /etc/qualitygate \
    && chown qualitygate:qualitygate /var/lib/qualitygate
USER 10001:10001
WORKDIR /var/lib/qualitygate
EXPOSE 9916
# The slim image has no curl or wget: ask Python. Plain HTTP on the default port; with TLS or
# basic auth (--web.config.file) override this healthcheck.
HEALTHCHECK --interval=15s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9916/-/healthy', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["qualitygate"]
CMD ["serve", "--config.file=/etc/qualitygate/tracker.yml", "--storage.path=/var/lib/qualitygate/qualitygate.db"]
