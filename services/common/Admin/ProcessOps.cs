using System.Text.Json.Nodes;
using Conduit.Common.Config;
using Conduit.Common.Grpc;
using Conduit.Common.Routing;

namespace Conduit.Common.Admin;

/// <summary>An in-memory cache a server admin may empty (<c>!admin server clear-cache</c>, Conduit's clear-service-caches).</summary>
public interface IClearableCache
{
    string Name { get; }
    /// <summary>Empties the cache; answers how many entries it held.</summary>
    long Clear();
}

/// <summary>A cache given by its name and clearing function (for caches that live inside another object).</summary>
public sealed class ClearableCache(string name, Func<long> clear) : IClearableCache
{
    public string Name => name;
    public long Clear() => clear();
}

/// <summary>
/// What one process of the deployment can do for the admin room and the admin API, about itself only: its memory, its
/// caches, a backup of its database. <see cref="DeploymentOps"/> asks every process.
/// </summary>
public interface IProcessOps
{
    /// <summary>"all" all-in-one, else the process's role (edge, keys, rooms, sync, federation, media).</summary>
    string Role { get; }
    JsonObject Memory();
    JsonObject ClearCaches();
    /// <summary>A backup of this process's database into the configured folder; null for a process without one.</summary>
    Task<JsonObject?> BackupAsync(CancellationToken ct);
}

/// <summary>
/// An operation of every process of the deployment: all-in-one, the one process; split, this process and each service
/// process (the others over their internal listeners, at <see cref="InternalPath"/>, with the internal secret). The
/// edge is reached only when the operation starts there (the admin API); the services cannot call it.
/// </summary>
public sealed class DeploymentOps(IProcessOps self, GlobalConfig config)
{
    /// <summary>The internal listener's paths for the operations: {prefix}/memory (GET), /caches and /backup (POST).</summary>
    public const string InternalPath = "/_conduit/internal/process";


    public Task<JsonArray> MemoryAsync(CancellationToken ct) => Each("memory", () => Task.FromResult<JsonObject?>(self.Memory()), ct);
    public Task<JsonArray> ClearCachesAsync(CancellationToken ct) => Each("caches", () => Task.FromResult<JsonObject?>(self.ClearCaches()), ct);
    public Task<JsonArray> BackupAsync(CancellationToken ct) => Each("backup", () => self.BackupAsync(ct), ct);

    async Task<JsonArray> Each(string op, Func<Task<JsonObject?>> local, CancellationToken ct)
    {
        var results = new JsonArray();
        if (await local() is { } mine) results.Add((JsonNode)mine);
        if (self.Role == "all" || string.IsNullOrEmpty(config.Services.InternalSecret)) return results;
        foreach (var s in Enum.GetValues<Service>().Where(s => s != Service.Edge && !string.Equals(s.ToString(), self.Role, StringComparison.OrdinalIgnoreCase)))
        {
            try
            {
                var answer = await Remote(s, op, ct);
                if (answer is not null) results.Add((JsonNode)answer);
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException or System.Text.Json.JsonException && !ct.IsCancellationRequested)
            {
                results.Add((JsonNode)new JsonObject { ["role"] = s.ToString().ToLowerInvariant(), ["error"] = e.Message });
            }
        }
        return results;
    }

    async Task<JsonObject?> Remote(Service s, string op, CancellationToken ct)
    {
        using var request = InternalHttp.Request(config, s, op == "memory" ? HttpMethod.Get : HttpMethod.Post, InternalPath + "/" + op);
        using var response = await InternalHttp.Client.SendAsync(request, ct);
        var text = await response.Content.ReadAsStringAsync(ct);
        if (!response.IsSuccessStatusCode)
            return new JsonObject { ["role"] = s.ToString().ToLowerInvariant(), ["error"] = $"HTTP {(int)response.StatusCode}: {text}" };
        return text.Length == 0 ? null : JsonNode.Parse(text) as JsonObject;
    }
}
