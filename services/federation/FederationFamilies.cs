using Conduit.Common.Storage;

namespace Conduit.Federation;

/// <summary>The federation service's key-value families.</summary>
public static class FederationFamilies
{
    public const string ServerKeys = "federation_server_keys";
    public const string RemoteKeys = "federation_remote_keys";
    public const string RemoteKeyResponses = "federation_remote_key_responses";
    public const string Outbound = "federation_outbound";
    public const string Destinations = "federation_destinations";
    public const string CatchUp = "federation_catchup";
    public const string Feed = "federation_feed";

    public static readonly ColumnFamily[] All =
    [
        new(ServerKeys, "\"signing_key\", or \"old_key\" 0xFF key id",
            "signing_key: key version (UTF-8) 0xFF 32-byte Ed25519 seed, replaced by a rotation; old_key: expired_ts (8-byte BE ms) then the 32-byte Ed25519 public key"),
        new(RemoteKeys, "server name 0xFF key id",
            "valid_until_ts (8-byte BE ms, at most 7 days after the fetch; an old key: its expired_ts) then expired_ts (8-byte BE ms, 0 for a current key) then the 32-byte Ed25519 public key"),
        new(RemoteKeyResponses, "server name",
            "the newest verified /_matrix/key/v2/server response of that server (UTF-8 JSON with its signatures), re-served by the notary endpoints"),
        new(Outbound, "destination 0xFF sequence (8-byte BE)",
            "a queued item for the destination, UTF-8 JSON: {\"room_id\", \"pdu\"} or {\"edu\"} (typing, presence and receipt EDUs are never stored)"),
        new(Destinations, "destination, or 0xFF alone",
            "backoff state, UTF-8 JSON {\"failures\", \"interval_ms\", \"retry_at\", \"since\" (ms), \"catch_up\"}; absent while the destination is healthy; 0xFF: the outbound sequence reserved so far (8-byte BE), never given out again"),
        new(CatchUp, "destination 0xFF room ID",
            "while the destination catches up: sequence (8-byte BE) then the newest PDU of the room for it (UTF-8 JSON)"),
        new(Feed, "\"feed_position\"",
            "the rooms stream position (8-byte BE) up to which this server's events have been queued for other servers"),
    ];
}
