# Debian's haproxy, its libraries and a static busybox (healthcheck): what deploy/lb/Dockerfile
# builds from Debian's image, gathered from this machine's packages instead.
FROM scratch
COPY rootfs/ /
COPY haproxy.cfg /etc/haproxy/haproxy.cfg
USER 10001:10001
ENTRYPOINT ["/usr/sbin/haproxy", "-W", "-db", "-f", "/etc/haproxy/haproxy.cfg"]
