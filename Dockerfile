# syntax=docker/dockerfile:1
# Build a static esignflow binary, then ship it alone on a distroless,
# non-root base.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/esignflow ./cmd/esignflow
# The directories the services write, owned by distroless's nonroot
# (65532): Docker fills an empty named volume from the image's directory at
# its mount point, ownership included, so a fresh volume mounted there is
# writable by the service instead of root-owned.
RUN mkdir -p /out/data/archive /out/data/sim && chown -R 65532:65532 /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/esignflow /usr/local/bin/esignflow
COPY --from=build --chown=65532:65532 /out/data/ /var/lib/esignflow/
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/esignflow"]
CMD ["--help"]
