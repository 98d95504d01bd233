using System.Diagnostics.Metrics;
using Conduit.Common.Storage;

namespace Conduit.Common.Metrics;

/// <summary>
/// The meters of this server. Each is created through the host's <see cref="IMeterFactory"/>, so two hosts in one
/// process (tests) keep their measurements apart, and the collector listens only to its own host's meters. With
/// metrics off no collector exists: the instruments are there but disabled, and recording is a no-op.
/// </summary>
public static class ConduitMeters
{
    public const string Prefix = "Conduit.";
    public const string Http = "Conduit.Http";
    public const string Grpc = "Conduit.Grpc";
    public const string Sync = "Conduit.Sync";
    public const string Federation = "Conduit.Federation";
    public const string Process = "Conduit.Process";
    public const string Storage = "Conduit.Storage";

    /// <summary>The meter <paramref name="name"/> of this host; a stand-alone one (never listened to) without a factory.</summary>
    public static Meter Create(IMeterFactory? factory, string name) => factory?.Create(name) ?? new Meter(name);

    /// <summary>Memory and garbage collection of this process, read when scraped.</summary>
    public static void AddProcessInstruments(IMeterFactory factory)
    {
        var m = factory.Create(Process);
        m.CreateObservableGauge("process.resident_memory", () => Environment.WorkingSet, "By", "Resident set size of the process.");
        m.CreateObservableCounter("process.cpu", () => Environment.CpuUsage.TotalTime.TotalSeconds, "s", "CPU time used by the process (user and system).");
        m.CreateObservableGauge("dotnet.gc.heap_size", () => GC.GetGCMemoryInfo().HeapSizeBytes, "By", "Managed heap size after the last garbage collection.");
        m.CreateObservableGauge("dotnet.gc.committed", () => GC.GetGCMemoryInfo().TotalCommittedBytes, "By", "Memory the garbage collector has committed.");
        m.CreateObservableCounter("dotnet.gc.allocated", () => GC.GetTotalAllocatedBytes(), "By", "Bytes allocated on the managed heap since the process started.");
        m.CreateObservableCounter("dotnet.gc.collections", () => new[]
        {
            new Measurement<long>(GC.CollectionCount(0), new KeyValuePair<string, object?>("generation", "gen0")),
            new Measurement<long>(GC.CollectionCount(1), new KeyValuePair<string, object?>("generation", "gen1")),
            new Measurement<long>(GC.CollectionCount(2), new KeyValuePair<string, object?>("generation", "gen2")),
        }, null, "Garbage collections by generation since the process started.");
    }

    /// <summary>The database's native memory, when its backend reports it (RocksDB).</summary>
    public static void AddStorageInstruments(IMeterFactory factory, IKeyValueStore store)
    {
        if (store is not IReportsMemory reporting) return;
        factory.Create(Storage).CreateObservableGauge("conduit.storage.memory",
            () => reporting.MemoryUsage().Select(u => new Measurement<long>(u.Bytes, new KeyValuePair<string, object?>("kind", u.Kind))),
            "By", "Native memory of the database by kind (RocksDB: block cache usage and capacity, memtables, table readers).");
    }
}
