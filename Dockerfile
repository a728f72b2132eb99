# The one imcluster image: every binary (imcluster, manager, imctl) in a
# distroless, non-root image. The operator's pods and the tiers it creates
# run /usr/local/bin/manager and /usr/local/bin/imcluster from it.
#
#   docker build -t ghcr.io/imcluster/imcluster:v0.1.0 .
#
# NOT BUILT HERE: the development machines and CI have no Docker engine (or
# any other image builder), so this file is untested by make test. The same
# binaries are built and tested with `make build`; this file only packages
# them. Keep it simple: a static Go build, nothing else.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w" -o /out/ \
        ./cmd/imcluster ./cmd/manager ./cmd/imctl

# distroless static, user nonroot (65532): no shell, no package manager.
# The operator renders runAsUser/runAsGroup 65532 and a read-only root file
# system for every pod; /tmp is an emptyDir it mounts.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/imcluster /out/manager /out/imctl /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/imcluster"]
