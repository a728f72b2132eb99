# The one imcluster image: every binary (imcluster, manager, imctl) on an
# empty base, non-root (65532), no shell. The operator's pods and the tiers
# it creates run /usr/local/bin/manager and /usr/local/bin/imcluster from it.
#
# With Docker:     docker build -t ghcr.io/imcluster/imcluster:v0.1.0 .
# Without Docker:  make image   (hack/image.sh: podman/buildah from Debian)
#
# hack/image.sh builds the same binaries on the host (no base image can be
# pulled on the development machines and CI) and packages them with the
# runtime stage below, taken from this file line by line (everything from
# the last FROM, with `--from=build /out/` read from its own context).
# test/realnode's TestImageMatchesDockerfile fails when the two drift
# (binaries, user, entrypoint, labels). Keep the build a static Go build.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG REVISION=unknown
RUN mkdir -p /out/etc/ssl/certs && cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ && \
    CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w" -o /out/ \
        ./cmd/imcluster ./cmd/manager ./cmd/imctl

# Runtime: nothing but the static binaries and the CA bundle (TLS to Kafka,
# Cassandra and etcd verifies against it unless the IMCluster names a CA).
# The operator renders runAsUser/runAsGroup 65532 and a read-only root file
# system for every pod; /tmp is an emptyDir it mounts.
FROM scratch
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="imcluster" \
      org.opencontainers.image.description="imcluster: message and push tiers, operator (manager) and CLI (imctl)" \
      org.opencontainers.image.source="https://github.com/imcluster/imcluster" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/imcluster /out/manager /out/imctl /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/imcluster"]
