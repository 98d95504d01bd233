using System.Runtime.CompilerServices;
using System.Threading.Channels;

namespace Conduit.Common;

/// <summary>
/// Hands every published item to every current watcher (a gRPC server stream each), in order. A watcher that joins
/// late sees only what is published after it joined, after the optional first item it is given.
/// </summary>
public sealed class Broadcast<T>
{
    readonly List<Channel<T>> _watchers = [];

    public async IAsyncEnumerable<T> Watch(Func<T>? first, [EnumeratorCancellation] CancellationToken ct)
    {
        var ch = Channel.CreateUnbounded<T>();
        lock (_watchers) _watchers.Add(ch);
        try
        {
            if (first is not null) yield return first();
            await foreach (var item in ch.Reader.ReadAllAsync(ct)) yield return item;
        }
        finally
        {
            lock (_watchers) _watchers.Remove(ch);
        }
    }

    public void Publish(T item)
    {
        lock (_watchers)
            foreach (var w in _watchers) w.Writer.TryWrite(item);
    }
}
