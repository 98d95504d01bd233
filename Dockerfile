# One image for every role: `conduit` all-in-one by default, `--role R` for a split deployment (docker-compose.yml).
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY . .
RUN dotnet publish services/edge -c Release -o /app

FROM mcr.microsoft.com/dotnet/aspnet:10.0
WORKDIR /app
COPY --from=build /app .
ENV CONDUIT_ADDRESS=0.0.0.0 CONDUIT_DATABASE_PATH=/var/lib/conduit
VOLUME /var/lib/conduit
EXPOSE 6167
ENTRYPOINT ["dotnet", "/app/conduit.dll"]
