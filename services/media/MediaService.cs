using Conduit.Common.Config;
using Conduit.Common.Http;
using Conduit.Common.Routing;
using Conduit.Media.Previews;
using Conduit.Media.Thumbnails;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Conduit.Media;

/// <summary>Composition entry points of the media service (no gRPC yet: nothing else calls it).</summary>
public static class MediaService
{
    public static IServiceCollection AddMediaService(this IServiceCollection services)
        => services.AddRateLimits().AddSingleton<MediaStore>().AddSingleton<UrlPreviewer>().AddSingleton<MediaEndpoints>().AddSingleton<RemoteMedia>().AddSingleton<FederationMediaEndpoints>().AddSingleton<MediaAdminEndpoints>()
            .AddSingleton<ThumbnailService>().AddHostedService(sp => sp.GetRequiredService<ThumbnailService>())
            .AddHostedService<MediaJanitor>();

    public static IEndpointRouteBuilder MapMediaService(this IEndpointRouteBuilder app)
    {
        app.ServiceProvider.GetRequiredService<MediaEndpoints>().Map(app);
        app.ServiceProvider.GetRequiredService<FederationMediaEndpoints>().Map(app);
        app.ServiceProvider.GetRequiredService<MediaAdminEndpoints>().Map(app);
        return app;
    }

    public static readonly ServiceModule Module = new(Service.Media, MediaFamilies.All, s => s.AddMediaService(), app => app.MapMediaService(), null, null);
}

/// <summary>
/// Deletes created media IDs whose upload never came, once a minute (and at start); applies media retention
/// (media_retention_days, media_retention_local_days: <see cref="MediaStore.ApplyRetention"/>) at start and once an hour.
/// </summary>
public sealed partial class MediaJanitor(MediaStore store, Microsoft.Extensions.Logging.ILogger<MediaJanitor> log) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMinutes(1));
        var minutes = 0;
        try
        {
            do
            {
                store.SweepExpired();
                if (minutes++ % 60 == 0 && store.ApplyRetention() is > 0 and var n) LogRetention(log, n);
            }
            while (await timer.WaitForNextTickAsync(stoppingToken));
        }
        catch (Exception) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping (also when the host is disposed without having started, the port being taken: the store may
            // already be closed).
        }
    }

    [Microsoft.Extensions.Logging.LoggerMessage(Level = Microsoft.Extensions.Logging.LogLevel.Information, Message = "Media retention deleted {Count} media")]
    static partial void LogRetention(Microsoft.Extensions.Logging.ILogger log, int count);
}
