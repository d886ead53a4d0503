# syntax=docker/dockerfile:1
# Build a static esignflow binary, then ship it alone on a distroless,
# non-root base.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/esignflow ./cmd/esignflow

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/esignflow /usr/local/bin/esignflow
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/esignflow"]
CMD ["--help"]
