# One image for every role: `conduit` all-in-one by default, `--role R` for a split deployment (docker-compose.yml).
# The Native AOT build (scripts/publish-aot.sh does the same outside Docker): one executable plus its native libraries.
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends clang zlib1g-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN dotnet publish services/edge -c Release -r linux-x64 -p:PublishAot=true -o /app && rm -f /app/*.dbg /app/*.pdb

FROM mcr.microsoft.com/dotnet/runtime-deps:10.0
WORKDIR /app
COPY --from=build /app .
ENV CONDUIT_ADDRESS=0.0.0.0 CONDUIT_DATABASE_PATH=/var/lib/conduit
VOLUME /var/lib/conduit
EXPOSE 6167
ENTRYPOINT ["/app/conduit"]
