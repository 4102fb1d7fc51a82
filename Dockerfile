# Static, non-root image of the controller. The same static build runs in CI
# (make build), since no Docker engine runs on the build machines.
FROM golang:1.26 AS build
WORKDIR /src
ENV GOTOOLCHAIN=local CGO_ENABLED=0
COPY go.mod go.sum ./
RUN go mod download
COPY cmd/ cmd/
COPY pkg/ pkg/
ARG VERSION=dev
RUN go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/sympozium-controller ./cmd/sympozium-controller

FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/sympozium-controller /sympozium-controller
USER 65532:65532
ENTRYPOINT ["/sympozium-controller"]
