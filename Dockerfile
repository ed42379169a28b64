# One image for every sisock process; pick the command at run time, e.g.
#   docker run IMAGE sisock router        (with SISOCK_ROUTER_URL=ws://0.0.0.0:8080/ws)
#   docker run IMAGE sisock hub
# See docker-compose.yml for a whole stack sharing one SISOCK_HOME volume.
FROM python:3.11-slim
WORKDIR /opt/sisock
COPY setup.py README.md ./
COPY sisock ./sisock
COPY hub ./hub
COPY servers ./servers
COPY crossbar ./crossbar
RUN pip install --no-cache-dir '.[router]'
ENV SISOCK_HOME=/var/lib/sisock
VOLUME /var/lib/sisock
EXPOSE 8080
CMD ["sisock", "demo"]
