#!/usr/bin/env bash
# hack/image.sh — `make image`: the one imcluster image without a Docker
# engine. Builds the static binaries on the host, packages them FROM scratch
# with the runtime stage of ./Dockerfile (podman, or buildah), and writes a
# docker-archive that `podman load`, `ctr images import` and
# `kind load image-archive` all accept.
#
# Env:
#   IMAGE         repository (default ghcr.io/imcluster/imcluster, the chart's default)
#   IMAGE_TAG     tag (default the chart's appVersion, so the chart's default
#                 image is what this builds); the image is also tagged with
#                 the git revision
#   IMAGE_ARCHIVE where the archive goes (default .run/image/imcluster.tar)
#   IMAGE_BUILDER podman (default when present) or buildah
#   IMAGE_REVISION the revision label (default: git rev-parse HEAD, -dirty when
#                 the Go sources differ from it)
#
# Prints the archive's path on stdout, progress on stderr.
#
# To a registry (the chart's image.repository/image.tag and the IMCluster's
# spec.image then name it):
#   podman tag ghcr.io/imcluster/imcluster:v0.1.0 registry.example.com/imcluster:v0.1.0
#   podman push registry.example.com/imcluster:v0.1.0
# or, from the archive alone: skopeo copy docker-archive:.run/image/imcluster.tar docker://registry.example.com/imcluster:v0.1.0
# Into a cluster without a registry: kind load image-archive .run/image/imcluster.tar,
# or ctr -n k8s.io images import .run/image/imcluster.tar on each node
# (hack/cluster.sh load does that for the local node).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$REPO_ROOT/hack/cluster_install.sh"

IMAGE="${IMAGE:-ghcr.io/imcluster/imcluster}"
chart_version="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$REPO_ROOT/charts/imcluster-operator/Chart.yaml")"
IMAGE_TAG="${IMAGE_TAG:-$chart_version}"
IMAGE_ARCHIVE="${IMAGE_ARCHIVE:-$REPO_ROOT/.run/image/imcluster.tar}"
REVISION="${IMAGE_REVISION:-$(git -C "$REPO_ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}"
if [[ -n "$(git -C "$REPO_ROOT" status --porcelain --untracked-files=no -- cmd services pkg api controllers go.mod go.sum 2>/dev/null)" ]]; then
	REVISION="$REVISION-dirty"
fi

builder() {
	local b="${IMAGE_BUILDER:-}"
	if [[ -z "$b" ]]; then
		command -v podman >/dev/null && b=podman
		[[ -z "$b" ]] && command -v buildah >/dev/null && b=buildah
	fi
	[[ -n "$b" ]] || { install_debs && b=podman; }
	echo "$b"
}

main() {
	local t0 ctx b
	t0=$(date +%s)
	b="$(builder)"
	ctx="$REPO_ROOT/.run/image/context"
	rm -rf "$ctx"
	mkdir -p "$ctx/out/etc/ssl/certs" "$(dirname "$IMAGE_ARCHIVE")"
	log "building the static binaries (imcluster, manager, imctl)"
	(cd "$REPO_ROOT" && CGO_ENABLED=0 GOOS=linux nice -n 10 go build -trimpath -ldflags "-s -w" -o "$ctx/out/" \
		./cmd/imcluster ./cmd/manager ./cmd/imctl) || die "go build failed"
	cp /etc/ssl/certs/ca-certificates.crt "$ctx/out/etc/ssl/certs/" || die "no CA bundle at /etc/ssl/certs/ca-certificates.crt (apt-get install ca-certificates)"
	containerfile >"$ctx/Containerfile"
	log "packaging $IMAGE:$IMAGE_TAG with $b (revision $REVISION)"
	local args=(--build-arg "VERSION=$IMAGE_TAG" --build-arg "REVISION=$REVISION"
		-t "$IMAGE:$IMAGE_TAG" -t "$IMAGE:${REVISION%-dirty}" -f "$ctx/Containerfile")
	case $b in
	podman) podman build -q "${args[@]}" "$ctx" >/dev/null ;;
	buildah) buildah bud -q "${args[@]}" "$ctx" >/dev/null ;;
	*) die "IMAGE_BUILDER: want podman or buildah, got $b" ;;
	esac || die "$b build failed"
	rm -f "$IMAGE_ARCHIVE.tmp"
	# docker-archive: one file that podman load, ctr images import (it reads
	# manifest.json) and kind load image-archive accept. -m keeps both tags.
	"$b" save -q --format docker-archive -m -o "$IMAGE_ARCHIVE.tmp" "$IMAGE:$IMAGE_TAG" "$IMAGE:${REVISION%-dirty}" >/dev/null ||
		die "$b save failed"
	mv "$IMAGE_ARCHIVE.tmp" "$IMAGE_ARCHIVE"
	# Older builds (other revision tags, or now untagged) would keep ~85 MB
	# each in the builder's storage: drop them.
	if [[ $b == podman ]]; then
		# (grep finds nothing on a first build: not an error.)
		podman images --format '{{.Repository}}:{{.Tag}}' --filter "reference=$IMAGE" |
			{ grep -vxF -e "$IMAGE:$IMAGE_TAG" -e "$IMAGE:${REVISION%-dirty}" || true; } | xargs -r podman rmi >/dev/null 2>&1 || true
		podman image prune -f >/dev/null 2>&1 || true
	fi
	log "image $IMAGE:$IMAGE_TAG ($IMAGE:${REVISION%-dirty}): $(du -m "$IMAGE_ARCHIVE" | cut -f1) MiB archive at $IMAGE_ARCHIVE, in $(($(date +%s) - t0))s"
	echo "$IMAGE_ARCHIVE"
}

# containerfile: the Dockerfile's runtime stage (from its last FROM), with
# the build stage's /out/ read from this context's out/ instead.
containerfile() {
	awk '/^FROM /{n=NR} {l[NR]=$0} END{for(i=n;i<=NR;i++) print l[i]}' "$REPO_ROOT/Dockerfile" |
		sed '/--from=build/{s: --from=build::;s: /out/: out/:g;}'
}

main "$@"
