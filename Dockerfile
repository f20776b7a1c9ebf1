# rps-service daemon. Config in /etc/rps (mount your rps.ini), data in /var/lib/rps,
# rps.log in /var/log/rps. Inside a container the listener must bind 0.0.0.0 to be
# reachable, and a non-loopback listener requires api_token:
#   docker run -e RPS_GENERAL_LISTEN=0.0.0.0 -e RPS_GENERAL_API_TOKEN=... -p 15777:15777 rps-service
FROM python:3.11-slim

RUN useradd --system --home-dir /var/lib/rps --shell /usr/sbin/nologin rps \
    && mkdir -p /etc/rps /var/lib/rps /var/log/rps \
    && chown rps:rps /var/lib/rps /var/log/rps

WORKDIR /opt/rps-service
COPY pyproject.toml README.md ./
COPY rps_service ./rps_service
RUN pip install --no-cache-dir . && rm -rf /root/.cache

# The shipped rps.ini with the container's absolute paths written into the file, not set
# as ENV: environment variables override the file, so ENV defaults would silently win over
# the database or log_file of an rps.ini mounted at /etc/rps.
COPY etc/rps.ini /etc/rps/rps.ini
RUN sed -i -e 's#^database = .*#database = sqlite:////var/lib/rps/rps.db#' \
        -e 's#^log_file = .*#log_file = /var/log/rps/rps.log#' /etc/rps/rps.ini \
    && grep -q '^database = sqlite:////var/lib/rps/rps.db$' /etc/rps/rps.ini \
    && grep -q '^log_file = /var/log/rps/rps.log$' /etc/rps/rps.ini

USER rps
VOLUME ["/etc/rps", "/var/lib/rps", "/var/log/rps"]
EXPOSE 15777
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:15777/health', timeout=4).status == 200 else 1)"
STOPSIGNAL SIGTERM
CMD ["rps-service", "run", "-c", "/etc/rps/rps.ini"]
