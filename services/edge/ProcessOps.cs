using System.Diagnostics;
using System.Text.Json.Nodes;
using Conduit.Common.Admin;
using Conduit.Common.Http;
using Conduit.Common.Runtime;
using Conduit.Common.Storage;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Conduit.Edge;

/// <summary>
/// This process's part of <see cref="DeploymentOps"/>: its memory (the process's resident set, the managed heap, the
/// database's native memory), its caches (every <see cref="IClearableCache"/> registered here), and a backup of its
/// database (<see cref="Backups"/>, when it has one).
/// </summary>
public sealed class ProcessOps(IServiceProvider services, string role, MemoryTrimmer.Options memory) : IProcessOps
{
    static readonly DateTimeOffset Started = Process.GetCurrentProcess().StartTime.ToUniversalTime();

    public string Role => role;

    public JsonObject Memory()
    {
        using var process = Process.GetCurrentProcess();
        var gc = GC.GetGCMemoryInfo();
        var o = new JsonObject
        {
            ["role"] = role,
            ["rss_bytes"] = process.WorkingSet64,
            ["managed_heap_bytes"] = gc.HeapSizeBytes,
            ["managed_committed_bytes"] = gc.TotalCommittedBytes,
            ["gc_collections"] = new JsonArray((JsonNode)GC.CollectionCount(0), (JsonNode)GC.CollectionCount(1), (JsonNode)GC.CollectionCount(2)),
            ["threads"] = process.Threads.Count,
            // Methods the JIT has compiled so far (each tier counts; 0 under Native AOT): most of a JIT build's code memory.
            ["jit_compiled_methods"] = System.Runtime.JitInfo.GetCompiledMethodCount(),
            ["jit_compiled_il_bytes"] = System.Runtime.JitInfo.GetCompiledILBytes(),
            ["uptime_seconds"] = (long)(DateTimeOffset.UtcNow - Started).TotalSeconds,
        };
        // The resident set's parts: file pages (the executable's and libraries' code and data; see MappedFiles) can be
        // read back from their files, anonymous memory cannot.
        if (MappedFiles.ResidentParts() is var (anon, file, shmem))
        {
            o["rss_anon_bytes"] = anon;
            o["rss_file_bytes"] = file;
            o["rss_shmem_bytes"] = shmem;
        }
        if (services.GetService<IKeyValueStore>() is { } store)
        {
            var db = new JsonObject { ["backend"] = store.Backend };
            if (store is IReportsMemory m) foreach (var (kind, bytes) in m.MemoryUsage()) db[kind + "_bytes"] = bytes;
            o["database"] = db;
        }
        return o;
    }

    public JsonObject ClearCaches()
    {
        var cleared = new JsonObject();
        foreach (var c in services.GetServices<IClearableCache>()) cleared[c.Name] = c.Clear();
        // What the caches held goes back to the system now rather than at the next collections.
        MemoryTrimmer.CollectAndTrim();
        if (memory.OwnsProcess) MappedFiles.PageOut();
        return new JsonObject { ["role"] = role, ["cleared"] = cleared };
    }

    public async Task<JsonObject?> BackupAsync(CancellationToken ct)
    {
        if (services.GetService<Backups>() is not { } backups) return null;
        var path = await backups.CreateAsync(null, ct);
        return new JsonObject { ["role"] = role, ["path"] = path };
    }

    /// <summary>A split service's side of <see cref="DeploymentOps"/>: on its internal listener (behind the internal secret).</summary>
    public static void MapInternal(IEndpointRouteBuilder app)
    {
        var ops = app.ServiceProvider.GetRequiredService<IProcessOps>();
        app.MapGet(DeploymentOps.InternalPath + "/memory", ctx => ctx.Response.WriteJsonAsync(ops.Memory()));
        app.MapPost(DeploymentOps.InternalPath + "/caches", ctx => ctx.Response.WriteJsonAsync(ops.ClearCaches()));
        app.MapPost(DeploymentOps.InternalPath + "/backup", async ctx =>
        {
            if (await ops.BackupAsync(ctx.RequestAborted) is { } done) await ctx.Response.WriteJsonAsync(done);
            else ctx.Response.StatusCode = StatusCodes.Status204NoContent;
        });
    }
}
