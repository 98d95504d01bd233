using System.Globalization;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Http;
using Conduit.Rooms.Rules;

namespace Conduit.Rooms;

/// <summary>
/// The parameters of a timestamp_to_event request, the same for clients and servers (spec: client-server-api,
/// getEventByTimestamp; server-server-api, "Timestamp to event"): <c>ts</c> in milliseconds and <c>dir</c>, f or b.
/// </summary>
public readonly record struct TimestampQuery(long Ts, bool Forward)
{
    /// <summary>The query from its two parameters: 400 M_MISSING_PARAM without one, M_INVALID_PARAM for a bad value.</summary>
    public static TimestampQuery Parse(string? ts, string? dir)
    {
        if (dir is null) throw Err.MissingParam("dir is required");
        if (dir is not ("f" or "b")) throw Err.InvalidParam("dir must be 'f' or 'b'");
        if (ts is null) throw Err.MissingParam("ts is required");
        if (!long.TryParse(ts, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var t)) throw Err.InvalidParam("ts must be an integer");
        return new(t, dir == "f");
    }

    public string Dir => Forward ? "f" : "b";

    /// <summary>Whether an event at <paramref name="eventTs"/> is on the asked side: at or after ts (f), at or before it (b).</summary>
    public bool Includes(long eventTs) => Forward ? eventTs >= Ts : eventTs <= Ts;

    /// <summary>Whether <paramref name="candidateTs"/> is strictly nearer to ts than <paramref name="thanTs"/>, both on the
    /// asked side (<see cref="Includes"/>); compared without subtracting, so no ts overflows.</summary>
    public bool Closer(long candidateTs, long thanTs) => Forward ? candidateTs < thanTs : candidateTs > thanTs;

    public MatrixException NotFound() => Err.NotFound($"Unable to find an event from {Ts} in the {(Forward ? "forward" : "backward")} direction");
}

/// <summary>
/// The search behind timestamp_to_event, for the client endpoint (<see cref="ReadEndpoints"/>) and the federation one
/// (<see cref="FederationServer"/>): the closest event of a room's timeline here on the asked side of ts.
/// </summary>
public static class TimestampLookup
{
    /// <summary>
    /// The closest timeline event in (<paramref name="after"/>, <paramref name="upTo"/>] on the asked side of ts that
    /// passes <paramref name="maySee"/>; <c>Hidden</c> tells whether an event on that side was passed over because it
    /// did not. Events are stored here in the order they were created, so timestamps grow along the timeline: the
    /// first event on the asked side, walking away from ts's far end, is the closest.
    /// </summary>
    public static (StoredEvent? Event, bool Hidden) Closest(RoomStore rooms, string roomId, TimestampQuery q, long after, long upTo, Func<StoredEvent, bool> maySee)
    {
        var hidden = false;
        foreach (var (_, id) in rooms.Timeline(roomId, after, upTo, backwards: !q.Forward))
        {
            if (rooms.Event(id) is not { Rejected: null } e || TimestampOf(e) is not { } ts || !q.Includes(ts)) continue;
            if (maySee(e)) return (e, hidden);
            hidden = true;
        }
        return (null, hidden);
    }

    /// <summary>
    /// Whether the event comes right after a gap in what this server has of the room: one of its prev events is unknown
    /// here or held without the state at it (an outlier: state from a join, fetched history), the test the PDU checks
    /// use for a gap too. Events between it and an earlier timestamp may then exist that only other servers have. The
    /// first event of a room this server joined over federation is one (its prev events are the resident server's).
    /// </summary>
    public static bool AfterGap(RoomStore rooms, StoredEvent e)
        => EventAuth.PrevEventIds(e.Pdu).Any(p => rooms.Event(p) is not { } pe || !pe.HasState);

    public static long? TimestampOf(StoredEvent e) => e.Pdu["origin_server_ts"] is JsonValue v && v.TryGetValue(out long ts) ? ts : null;

    /// <summary>The answer of both endpoints: <c>{event_id, origin_server_ts}</c>.</summary>
    public static JsonObject Answer(StoredEvent e) => new() { ["event_id"] = e.EventId, ["origin_server_ts"] = TimestampOf(e) };
}
