using System.Threading.Channels;

namespace Conduit.Rooms;

/// <summary>One advance of the room stream: a durable position and the local users it concerns.</summary>
public sealed record StreamAdvance(long Position, IReadOnlyList<string> UserIds);

/// <summary>
/// Publishes room-stream positions after they are durable. Each subscriber has its own channel and reader;
/// a subscriber that falls far behind is sent only the latest position with the user "*", which tells it to wake
/// everyone (nothing is lost: sync reads data from storage, the stream only says "look again").
/// </summary>
public sealed class RoomStream
{
    readonly Lock _lock = new();
    readonly List<Channel<StreamAdvance>> _subscribers = [];
    long _position;

    public RoomStream(RoomStore store) => _position = store.StreamPosition;

    public long Position { get { lock (_lock) return _position; } }

    public void Publish(StreamAdvance a)
    {
        lock (_lock)
        {
            if (a.Position > _position) _position = a.Position;
            foreach (var s in _subscribers)
                if (!s.Writer.TryWrite(a))
                {
                    while (s.Reader.TryRead(out _)) { }
                    s.Writer.TryWrite(new StreamAdvance(_position, ["*"]));
                }
        }
    }

    public async IAsyncEnumerable<StreamAdvance> Subscribe([System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
    {
        var ch = Channel.CreateBounded<StreamAdvance>(new BoundedChannelOptions(4096) { SingleReader = true });
        long start;
        lock (_lock)
        {
            _subscribers.Add(ch);
            start = _position;
        }
        try
        {
            yield return new StreamAdvance(start, []);
            await foreach (var a in ch.Reader.ReadAllAsync(ct)) yield return a;
        }
        finally
        {
            lock (_lock) _subscribers.Remove(ch);
        }
    }
}
