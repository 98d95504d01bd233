using Conduit.Common.Routing;

namespace Conduit.Common.Tests;

/// <summary>The route table's guest rules (spec: client-server-api, "Guest access"), which the edge applies.</summary>
public sealed class GuestRouteTests
{
    [Fact]
    public void Every_guest_method_is_a_method_of_its_route()
    {
        foreach (var r in RouteTable.All)
            Assert.True(r.GuestMethods.All(m => r.Methods.Contains(m)), $"{r.Template}: guests may {string.Join(",", r.GuestMethods)} of {string.Join(",", r.Methods)}");
    }

    // The spec's list of what guests may call, as far as this server serves it (no /initialSync, no /events).
    public static TheoryData<string, string> SpecGuestEndpoints() => new()
    {
        { "GET", "{C}/rooms/{roomId}/state" }, { "GET", "{C}/rooms/{roomId}/context/{eventId}" },
        { "GET", "{C}/rooms/{roomId}/event/{eventId}" }, { "GET", "{C}/rooms/{roomId}/state/{eventType}/{**stateKey}" },
        { "GET", "{C}/rooms/{roomId}/messages" }, { "GET", "{C}/rooms/{roomId}/members" }, { "GET", "{C}/sync" },
        { "GET", "/_matrix/client/v1/media/download/{serverName}/{mediaId}" },
        { "GET", "/_matrix/client/v1/media/download/{serverName}/{mediaId}/{fileName}" },
        { "GET", "/_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}" },
        { "PUT", "{C}/rooms/{roomId}/send/{eventType}/{txnId}" }, { "PUT", "{C}/rooms/{roomId}/state/{eventType}/{**stateKey}" },
        { "PUT", "{C}/sendToDevice/{eventType}/{txnId}" }, { "PUT", "{C}/profile/{userId}/{field}" },
        { "DELETE", "{C}/profile/{userId}/{field}" }, { "GET", "{C}/devices" }, { "GET", "{C}/devices/{deviceId}" },
        { "PUT", "{C}/devices/{deviceId}" }, { "GET", "{C}/account/whoami" }, { "POST", "{C}/keys/upload" },
        { "POST", "{C}/keys/query" }, { "POST", "{C}/keys/claim" },
    };

    [Theory, MemberData(nameof(SpecGuestEndpoints))]
    public void The_specs_guest_endpoints_are_open_to_guests(string method, string template)
        => Assert.True(RouteTable.All.Single(r => r.Template == template).AllowsGuest(method, null));

    [Fact]
    public void Membership_is_open_to_guests_for_join_and_leave_only()
    {
        Assert.True(RouteTable.Membership.AllowsGuest("POST", "join"));
        Assert.True(RouteTable.Membership.AllowsGuest("POST", "leave"));
        foreach (var action in new[] { "invite", "kick", "ban", "unban", "forget" })
            Assert.False(RouteTable.Membership.AllowsGuest("POST", action));
        Assert.False(RouteTable.Membership.AllowsGuest("POST", null));
    }

    [Fact]
    public void The_rest_is_closed_to_guests()
    {
        Assert.False(RouteTable.CreateRoom.AllowsGuest("POST", null));
        Assert.False(RouteTable.Device.AllowsGuest("DELETE", null));
        Assert.False(RouteTable.Logout.AllowsGuest("POST", null));
        Assert.False(RouteTable.AdminWhois.AllowsGuest("GET", null));
        Assert.False(RouteTable.MediaUpload.AllowsGuest("POST", null));
        Assert.False(RouteTable.PublicRooms.AllowsGuest("POST", null));
        Assert.True(RouteTable.PublicRooms.AllowsGuest("GET", null));
    }
}
