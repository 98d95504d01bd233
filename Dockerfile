# One image for every role: `conduit` all-in-one by default, `--role R` for a split deployment (docker-compose.yml).
# The Native AOT build (scripts/publish-aot.sh does the same outside Docker): one executable plus its native libraries.
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends clang zlib1g-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN dotnet publish services/edge -c Release -r linux-x64 -p:PublishAot=true -o /app && rm -f /app/*.dbg /app/*.pdb

# The smallest .NET base (no runtime: the AOT executable needs only libc, OpenSSL and ICU-less globalization).
FROM mcr.microsoft.com/dotnet/runtime-deps:10.0
WORKDIR /app
COPY --from=build /app .
# The data folder belongs to the image's non-root user ("app", uid 1654), which runs the server.
RUN mkdir -p /var/lib/conduit && chown app:app /var/lib/conduit
USER app
ENV CONDUIT_ADDRESS=0.0.0.0 CONDUIT_DATABASE_PATH=/var/lib/conduit
VOLUME /var/lib/conduit
EXPOSE 6167
# All-in-one and the edge answer on their public port; a service (--role R) through its control socket.
# docker-compose.yml gives each split service its own healthcheck command with its role.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 CMD ["/app/conduit", "healthcheck"]
ENTRYPOINT ["/app/conduit"]
