# The image deploy/job.yaml runs: kubectl-ippool alone on a distroless base
# (glibc, CA roots, non-root user). Build: docker build -t <registry>/kubectl-ippool:v0.1.0 .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && cp target/release/kubectl-ippool /kubectl-ippool

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /kubectl-ippool /usr/local/bin/kubectl-ippool
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/kubectl-ippool"]
