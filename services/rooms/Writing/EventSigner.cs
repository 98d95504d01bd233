using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Crypto;
using Conduit.Common.Events;
using Grpc.Core;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conduit.Rooms;

/// <summary>
/// Signs the events this server creates, in process, with the server's signing key. The federation service owns
/// the key and hands it out over <c>WatchSigningKey</c> (the current key at once, each replacement later), so a
/// send makes no call per event and holds no room lock across a network round trip. The watch starts with the
/// host (or on first use, in tests) and reconnects with backoff if the federation service restarts; a send
/// that finds no key yet waits for it, for a bounded time.
/// </summary>
public sealed partial class EventSigner(Protos.Federation.Federation.FederationClient federation, ILogger<EventSigner> log) : IHostedService, IDisposable
{
    /// <summary>The server name and key that signatures are made with.</summary>
    public sealed record Key(string ServerName, SigningKey SigningKey);

    static readonly TimeSpan WaitForKey = TimeSpan.FromSeconds(15);

    readonly CancellationTokenSource _stop = new();
    readonly TaskCompletionSource _first = new(TaskCreationOptions.RunContinuationsAsynchronously);
    volatile Key? _key;
    int _started, _disposed;
    long _signed;

    /// <summary>How many events this signer has signed (a figure for tests and diagnostics).</summary>
    public long Signed => Interlocked.Read(ref _signed);

    public Task StartAsync(CancellationToken cancellationToken)
    {
        Start();
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        _stop.Cancel();
        return Task.CompletedTask;
    }

    void Start()
    {
        if (Interlocked.Exchange(ref _started, 1) == 0) _ = Task.Run(WatchAsync);
    }

    /// <summary>The current key; waits (bounded) while none has arrived yet, then answers 503 M_UNKNOWN.</summary>
    public async ValueTask<Key> CurrentAsync(CancellationToken ct)
    {
        if (_key is { } key) return key;
        Start();
        try
        {
            await _first.Task.WaitAsync(WaitForKey, ct);
        }
        catch (TimeoutException)
        {
            throw new MatrixException("M_UNKNOWN", 503, "The server's signing key is not available yet; try again shortly");
        }
        return _key!;
    }

    /// <summary>Adds this server's signature to a hashed PDU (spec: server-server-api, "Signing events").</summary>
    public void Sign(JsonObject pdu, RoomVersion version, Key key)
    {
        var signature = key.SigningKey.SignBase64(EventHashing.SigningBytes(pdu, version));
        JsonSigning.AddSignature(pdu, key.ServerName, key.SigningKey.KeyId, signature);
        Interlocked.Increment(ref _signed);
    }

    async Task WatchAsync()
    {
        var delay = TimeSpan.FromMilliseconds(100);
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                using var call = federation.WatchSigningKey(new Protos.Federation.WatchSigningKeyRequest(), cancellationToken: _stop.Token);
                await foreach (var update in call.ResponseStream.ReadAllAsync(_stop.Token))
                {
                    // Replaced keys are not disposed: a send on another thread may still be signing with one.
                    _key = new Key(update.ServerName, SigningKey.FromSeed(update.Seed.Span, update.Version));
                    _first.TrySetResult();
                    delay = TimeSpan.FromMilliseconds(100);
                }
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested) { return; }
            catch (RpcException) when (_stop.IsCancellationRequested) { return; }
            catch (Exception e)
            {
                LogWatchBroken(log, delay.TotalMilliseconds, e.Message);
            }
            try { await Task.Delay(delay, _stop.Token); } catch (OperationCanceledException) { return; }
            delay = TimeSpan.FromMilliseconds(Math.Min(delay.TotalMilliseconds * 2, 5000));
        }
    }

    // Disposed once as a singleton and once as the hosted service it also is: the second call does nothing. The
    // token source is not disposed, as the watch loop may still be reading it while it winds down.
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0) _stop.Cancel();
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Signing key stream from the federation service broke; reconnecting in {DelayMs} ms: {Reason}")]
    static partial void LogWatchBroken(ILogger log, double delayMs, string reason);
}
