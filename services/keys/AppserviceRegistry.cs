using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Appservices;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Conduit.Common.Storage;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using K = Conduit.Common.Storage.Keys;

namespace Conduit.Keys;

/// <summary>A registration made at runtime, as stored and as the other processes are sent it.</summary>
public sealed record StoredAppservice(string Id, string Yaml, string RegisteredBy, long RegisteredTs);

/// <summary>
/// Application services registered at runtime by admins (the admin room's <c>appservices register</c>, Conduit's
/// register-appservice), kept in <see cref="KeysFamilies.Appservices"/>: the keys service owns them because it owns
/// tokens. The registered set is the config files' registrations followed by these, checked as one set
/// (<see cref="AppserviceLoader.CheckTogether"/>); a runtime registration may replace an earlier runtime one of the same
/// id (as Conduit's does) but never a config file's, nor can one be removed here. Every change is written, then put into
/// <see cref="GlobalConfig.Appservices"/> (this process: all-in-one, every service at once), then published to the
/// other processes' <see cref="AppserviceFollower"/> (split mode), all under one lock so the order is the same for all.
/// </summary>
public sealed partial class AppserviceRegistry(IKeyValueStore store, GlobalConfig config, ILogger<AppserviceRegistry> log) : IHostedService
{
    readonly IKvMap _map = store.Map(KeysFamilies.Appservices);
    readonly Lock _lock = new();
    readonly Broadcast<IReadOnlyList<StoredAppservice>> _changes = new();
    volatile IReadOnlyList<StoredAppservice> _current = [];

    /// <summary>Milliseconds since the epoch; tests move it.</summary>
    public Func<long> Clock { get; set; } = Ids.NowMs;

    /// <summary>The runtime registrations in effect, by id.</summary>
    public IReadOnlyList<StoredAppservice> Current => _current;

    /// <summary>Reads the stored registrations into the config before the server serves requests.</summary>
    public Task StartAsync(CancellationToken ct)
    {
        Load();
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken ct) => Task.CompletedTask;

    /// <summary>
    /// The stored registrations that still fit with the config files' (a file added since may take an id or a token):
    /// one that does not is left out and logged, and stays stored, so an admin can see and remove it.
    /// </summary>
    public void Load()
    {
        lock (_lock)
        {
            var kept = new List<(StoredAppservice Stored, AppserviceRegistration Parsed)>();
            foreach (var (k, v) in _map.Scan([]))
            {
                var s = FromJson(k, v);
                try
                {
                    var r = Parsed(s);
                    AppserviceLoader.CheckTogether([.. config.FileAppservices(), .. kept.Select(k => k.Parsed), r]);
                    kept.Add((s, r));
                }
                catch (ConfigException e)
                {
                    LogLeftOut(log, s.Id, e.Message);
                }
            }
            Apply(kept);
        }
    }

    /// <summary>The registration parsed as a runtime one (what <see cref="AppserviceFollower"/> does too).</summary>
    public static AppserviceRegistration Parsed(StoredAppservice s)
        => AppserviceLoader.Parse(s.Yaml, $"application service '{s.Id}'") with { Runtime = true, Source = $"registered at runtime by {s.RegisteredBy}" };

    /// <summary>
    /// Registers (or replaces, for a runtime registration of the same id) the application service of
    /// <paramref name="yaml"/>; answers whether it replaced one. Every error is 400 M_INVALID_PARAM with a message
    /// naming what is wrong (the YAML's, or which registration it clashes with).
    /// </summary>
    public (AppserviceRegistration Registration, bool Replaced) Register(string yaml, string registeredBy)
    {
        AppserviceRegistration r;
        try { r = AppserviceLoader.Parse(yaml, "The registration"); }
        catch (ConfigException e) { throw Err.InvalidParam(e.Message); }
        lock (_lock)
        {
            if (config.FileAppservices().FirstOrDefault(f => f.Id == r.Id) is { } file)
                throw Err.InvalidParam($"The application service '{r.Id}' is registered by the config file {file.Source}; a registration made here cannot replace it (change the file and restart)");
            var others = Runtime().Where(a => a.Id != r.Id).ToList();
            try { AppserviceLoader.CheckTogether([.. config.FileAppservices(), .. others, r]); }
            catch (ConfigException e) { throw Err.InvalidParam(e.Message); }

            var stored = new StoredAppservice(r.Id, yaml, registeredBy, Clock());
            var replaced = _map.Contains(K.Utf8(r.Id));
            _map.Put(K.Utf8(r.Id), ToJson(stored));
            Apply([.. _current.Where(s => s.Id != r.Id).Select(s => (s, Runtime().First(a => a.Id == s.Id))), (stored, Parsed(stored))]);
            LogRegistered(log, r.Id, registeredBy);
            return (Runtime().First(a => a.Id == r.Id), replaced);
        }
    }

    /// <summary>Removes a runtime registration: 404 M_NOT_FOUND for an unknown id, 403 M_FORBIDDEN for a config file's.</summary>
    public void Unregister(string id, string by)
    {
        lock (_lock)
        {
            if (config.FileAppservices().FirstOrDefault(f => f.Id == id) is { } file)
                throw Err.Forbidden($"The application service '{id}' is registered by the config file {file.Source}, not here: remove it from app_service_config_files and restart");
            if (!_map.Contains(K.Utf8(id))) throw Err.NotFound($"No application service '{id}' is registered");
            _map.Delete(K.Utf8(id));
            Apply(_current.Where(s => s.Id != id).Select(s => (s, Runtime().First(a => a.Id == s.Id))).ToList());
            LogUnregistered(log, id, by);
        }
    }

    /// <summary>The stored record of a runtime registration, whether in effect or left out at start.</summary>
    public StoredAppservice? Stored(string id) => _map.Get(K.Utf8(id)) is { } v ? FromJson(K.Utf8(id), v) : null;

    /// <summary>Every runtime registration in effect now, then every change (the whole set each time), until cancelled.</summary>
    public IAsyncEnumerable<IReadOnlyList<StoredAppservice>> Watch(CancellationToken ct) => _changes.Watch(() => _current, ct);

    IEnumerable<AppserviceRegistration> Runtime() => config.Appservices().Where(a => a.Runtime);

    // Under _lock: the config (every reader in this process), then the watchers, in the order of the writes.
    void Apply(IReadOnlyList<(StoredAppservice Stored, AppserviceRegistration Parsed)> set)
    {
        var ordered = set.OrderBy(s => s.Stored.Id, StringComparer.Ordinal).ToList();
        config.SetRuntimeAppservices(ordered.Select(s => s.Parsed));
        _current = ordered.Select(s => s.Stored).ToArray();
        _changes.Publish(_current);
    }

    static byte[] ToJson(StoredAppservice s) => Encoding.UTF8.GetBytes(new JsonObject
    {
        ["yaml"] = s.Yaml,
        ["registered_by"] = s.RegisteredBy,
        ["registered_ts"] = s.RegisteredTs,
    }.ToJsonString());

    static StoredAppservice FromJson(byte[] key, byte[] v)
    {
        var o = JsonNode.Parse(v)!.AsObject();
        return new StoredAppservice(Encoding.UTF8.GetString(key), o["yaml"]!.GetValue<string>(), o["registered_by"]?.GetValue<string>() ?? "", o["registered_ts"]?.GetValue<long>() ?? 0);
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "The application service {Id} registered at runtime is left out: {Reason}")]
    static partial void LogLeftOut(ILogger log, string id, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Application service {Id} registered by {User}")]
    static partial void LogRegistered(ILogger log, string id, string user);

    [LoggerMessage(Level = LogLevel.Information, Message = "Application service {Id} unregistered by {User}")]
    static partial void LogUnregistered(ILogger log, string id, string user);
}
