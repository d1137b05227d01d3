# The strata binary and the shared libraries it loads, nothing else (scripts/compose-images.sh
# gathers them); runs as an unprivileged user, like the Dockerfile at the root.
FROM scratch
COPY rootfs/ /
COPY --chown=10001:10001 home/ /var/lib/strata/
USER 10001:10001
WORKDIR /var/lib/strata
ENTRYPOINT ["/usr/local/bin/strata"]
