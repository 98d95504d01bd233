using Conduit.Common.Appservices;
using Conduit.Common.Config;
using Conduit.Protos.Keys;
using Grpc.Core;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conduit.Keys;

/// <summary>
/// Split mode, in every process but the keys service's: keeps <see cref="GlobalConfig.Appservices"/> equal to this
/// process's config files' registrations plus those the keys service holds (<see cref="AppserviceRegistry"/>), by
/// following its <c>WatchAppservices</c> stream (the whole set at connection, then after each change). When the
/// stream breaks the last set received stays in force (an exclusive namespace should not open up because keys
/// restarts) and the stream is opened again after 100 ms, doubling to at most 2 s while keys is unreachable; the
/// first message of the new stream brings whatever changed meanwhile. Lives beside the registry, so the one
/// protocol has its two ends in one project; the host adds it (<c>ConduitHost</c>).
/// </summary>
public sealed partial class AppserviceFollower(Protos.Keys.Keys.KeysClient keys, GlobalConfig config, ILogger<AppserviceFollower> log) : BackgroundService
{
    public static readonly TimeSpan MaxRetryDelay = TimeSpan.FromSeconds(2);

    protected override async Task ExecuteAsync(CancellationToken ct)
    {
        var delay = TimeSpan.FromMilliseconds(100);
        while (!ct.IsCancellationRequested)
        {
            try
            {
                using var call = keys.WatchAppservices(new WatchAppservicesRequest(), cancellationToken: ct);
                await foreach (var set in call.ResponseStream.ReadAllAsync(ct))
                {
                    Apply(set);
                    delay = TimeSpan.FromMilliseconds(100);
                }
            }
            catch (Exception) when (ct.IsCancellationRequested) { return; }
            catch (Exception e)
            {
                LogStreamBroken(log, e.Message);
            }
            try { await Task.Delay(delay, ct); } catch (OperationCanceledException) { return; }
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, MaxRetryDelay.Ticks));
        }
    }

    /// <summary>Puts the set into the config; one that does not parse or clashes with this process's config files
    /// (a config that differs from the keys service's) is left out and logged.</summary>
    void Apply(AppserviceSet set)
    {
        var kept = new List<AppserviceRegistration>();
        foreach (var a in set.Appservices)
        {
            try
            {
                var r = AppserviceRegistry.Parsed(new StoredAppservice(a.Id, a.Yaml, a.RegisteredBy, a.RegisteredTs));
                AppserviceLoader.CheckTogether([.. config.FileAppservices(), .. kept, r]);
                kept.Add(r);
            }
            catch (ConfigException e)
            {
                LogLeftOut(log, a.Id, e.Message);
            }
        }
        config.SetRuntimeAppservices(kept);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "The application service stream from the keys service broke; the last set received stays in force: {Reason}")]
    static partial void LogStreamBroken(ILogger log, string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "The application service {Id} registered at runtime is left out in this process: {Reason}")]
    static partial void LogLeftOut(ILogger log, string id, string reason);
}
