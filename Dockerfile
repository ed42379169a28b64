# One image for every sisock process; pick the command at run time, e.g.
#   docker run IMAGE sisock router        (with SISOCK_ROUTER_URL=ws://0.0.0.0:8080/ws)
#   docker run IMAGE sisock hub
# docker-compose.yml runs a whole stack: secrets (SISOCK_HOME) and archives
# live in volumes, never in the image. docs/deployment.md explains both.

# The dashboard's static files, built from web/ with its lock file.
FROM node:20-slim AS dashboard
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/src ./src
RUN npm run build

FROM python:3.11-slim
WORKDIR /opt/sisock
COPY setup.py README.md ./
COPY sisock ./sisock
COPY hub ./hub
COPY servers ./servers
COPY crossbar ./crossbar
# bjdata: optional UBJSON backend built for NumPy 1.x (a traceback in every log); unused
RUN pip install --no-cache-dir '.[router,modbus,sensors]' && pip uninstall --yes bjdata
COPY --from=dashboard /src/web/dist /opt/sisock/web
ENV SISOCK_HOME=/var/lib/sisock \
    SISOCK_WEB_STATIC=/opt/sisock/web
VOLUME ["/var/lib/sisock", "/srv/archive"]
# 8080: the router (WAMP); 8000: sisock web (dashboard, Grafana, REST)
EXPOSE 8080 8000
CMD ["sisock", "demo"]
