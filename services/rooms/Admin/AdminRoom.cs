using System.Text.Json.Nodes;
using System.Threading.Channels;
using Conduit.Common;
using Conduit.Common.Admin;
using Conduit.Common.Config;
using Conduit.Common.Http;
using Conduit.Common.Events;
using Markdig;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Conduit.Rooms.Admin;

/// <summary>
/// The admin room, as in Conduit: on first start the server creates its bot @conduit:{server_name} (an account with no
/// password, which no one may register) and the room #admins:{server_name}, which the bot owns (power 100; invite-only;
/// not federated; only the bot may invite, kick or change state). Every server admin is invited: the first account
/// registered (keys tells the bot, <see cref="InviteAsync"/>), anyone made admin later, and, at each start, admins who
/// were never in the room. Messages in the room that start with <c>!admin</c> or address the bot
/// (<c>@conduit:{server_name}: command</c>, Conduit's form) are commands (<see cref="AdminCommands"/>): run in order,
/// one at a time, each only if its sender is a server admin (asked of keys at that moment), and answered by the bot
/// with a notice replying to the command (Markdown, rendered to HTML with tables). A command sent while the server is
/// down is not run when it comes back: the bot starts listening at the stream position it finds.
/// </summary>
public sealed partial class AdminRoom(RoomStore rooms, RoomStream stream, EventSender sender, RoomParams param, AdminCommands commands,
    InternalCalls calls, GlobalConfig config, IHostApplicationLifetime lifetime, ILogger<AdminRoom> log) : BackgroundService
{
    static readonly MarkdownPipeline Markdown = new MarkdownPipelineBuilder().UsePipeTables().UseAutoLinks().DisableHtml().Build();

    readonly SemaphoreSlim _membership = new(1, 1);
    readonly TaskCompletionSource<string> _room = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public string BotUserId => AdminBot.UserId(config.ServerName);
    public string Alias => AdminBot.RoomAlias(config.ServerName);

    /// <summary>The admin room's ID once it exists (null before the first start has created it).</summary>
    public string? RoomId => _room.Task.IsCompletedSuccessfully ? _room.Task.Result : rooms.AliasTarget(Alias);

    Caller Bot => new(BotUserId, "admin-room", IsAdmin: true);

    protected override async Task ExecuteAsync(CancellationToken ct)
    {
        // Before anything else: commands sent from here on are answered.
        var listening = Listen(ct);
        // The admin API's endpoints are known once the host has built its pipeline (hosted services start before).
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using (lifetime.ApplicationStarted.Register(() => started.TrySetResult()))
        using (ct.Register(() => started.TrySetCanceled(ct)))
            await started.Task;
        var delay = TimeSpan.FromMilliseconds(200);
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await EnsureBotAccount(ct);
                var roomId = await EnsureRoom(ct);
                _room.TrySetResult(roomId);
                await InviteAdmins(roomId, ct);
                break;
            }
            catch (Exception e) when (!ct.IsCancellationRequested && e is not OperationCanceledException)
            {
                // Split mode: keys may not be up yet.
                LogSetupRetry(log, e.Message);
                await Task.Delay(delay, ct);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(2).Ticks));
            }
        }
        await listening;
    }

    async Task EnsureBotAccount(CancellationToken ct)
    {
        var path = "/_synapse/admin/v2/users/" + Uri.EscapeDataString(BotUserId);
        var existing = await calls.SendAsync("GET", path, null, Bot, ct);
        if (existing.Ok) return;
        if (existing.Status != 404) throw new InvalidOperationException("the keys service answered " + existing.Error);
        var created = await calls.SendAsync("PUT", path, new JsonObject { ["displayname"] = AdminBot.DisplayName, ["admin"] = true }, Bot, ct);
        if (!created.Ok) throw new InvalidOperationException("creating the bot failed: " + created.Error);
    }

    async Task<string> EnsureRoom(CancellationToken ct)
    {
        if (rooms.AliasTarget(Alias) is { } existing) return existing;
        var version = RoomVersion.Find(config.DefaultRoomVersion) ?? throw new InvalidOperationException("unknown default room version");
        var bot = BotUserId;
        var create = new JsonObject { ["room_version"] = version.Id, ["m.federate"] = false };
        if (version.CreatorInCreateContent) create["creator"] = bot;
        var powerLevels = new JsonObject
        {
            // v12: the creator has unlimited power and may not be listed.
            ["users"] = version.PrivilegedCreators ? new JsonObject() : new JsonObject { [bot] = 100 },
            ["users_default"] = 0,
            ["events"] = new JsonObject(),
            ["events_default"] = 0,
            ["state_default"] = 100,
            ["invite"] = 100, ["kick"] = 100, ["ban"] = 100, ["redact"] = 100,
            ["notifications"] = new JsonObject { ["room"] = 100 },
        };
        var events = new List<NewEvent>
        {
            new("m.room.create", "", create),
            new("m.room.member", bot, new JsonObject { ["membership"] = "join", ["displayname"] = AdminBot.DisplayName }),
            new("m.room.power_levels", "", powerLevels),
            new("m.room.canonical_alias", "", new JsonObject { ["alias"] = Alias }),
            new("m.room.join_rules", "", new JsonObject { ["join_rule"] = "invite" }),
            new("m.room.history_visibility", "", new JsonObject { ["history_visibility"] = "shared" }),
            new("m.room.guest_access", "", new JsonObject { ["guest_access"] = "forbidden" }),
            new("m.room.name", "", new JsonObject { ["name"] = $"{config.ServerName} Admin Room" }),
            new("m.room.topic", "", new JsonObject { ["topic"] = $"Manage {config.ServerName}: type !admin help" }),
            new("m.room.message", null, Notice($"""
                Welcome to the admin room of **{config.ServerName}**. Server admins are invited here; commands typed here by a
                server admin are answered by this bot. Type `!admin help` for the list, or address the bot as Conduit's admin
                room does (`{bot}: help`).
                """)),
        };
        var roomId = version.RoomIdFromCreateEvent ? "" : $"!{Ids.Random(18)}:{config.ServerName}";
        roomId = (await sender.SendAsync(roomId, bot, events, null, ct))[0].RoomId;
        // Two starts cannot race here (one process owns the rooms database), and the alias names the room from now on.
        rooms.PutAlias(Alias, roomId, bot);
        LogCreated(log, roomId, Alias);
        return roomId;
    }

    /// <summary>At start: every server admin who was never in the room is invited (one who left stays out).</summary>
    async Task InviteAdmins(string roomId, CancellationToken ct)
    {
        string? from = "0";
        while (from is not null)
        {
            var page = await calls.SendAsync("GET", $"/_synapse/admin/v2/users?admins=true&deactivated=false&guests=false&limit=500&from={from}", null, Bot, ct);
            if (!page.Ok) throw new InvalidOperationException("listing admins failed: " + page.Error);
            foreach (var u in page.Object["users"]?.AsArray() ?? [])
                if (u?["name"]?.GetValue<string>() is { } userId && userId != BotUserId && rooms.MembershipOf(userId, roomId) is null)
                    await Invite(roomId, userId, ct);
            from = page.Object["next_token"]?.ToString();
        }
    }

    /// <summary>A user became a server admin: invited into the admin room unless joined or invited already.</summary>
    public async Task InviteAsync(string userId, CancellationToken ct)
    {
        if (userId == BotUserId || !AuthRules.IsLocal(userId, config.ServerName)) return;
        // Before the room exists the start's own pass over the admins invites them.
        if (RoomId is not { } roomId) return;
        if (rooms.MembershipOf(userId, roomId)?.State is "join" or "invite") return;
        await Invite(roomId, userId, ct);
    }

    async Task Invite(string roomId, string userId, CancellationToken ct)
    {
        await _membership.WaitAsync(ct);
        try
        {
            if (rooms.MembershipOf(userId, roomId)?.State is "join" or "invite" or "ban") return;
            await sender.SendAsync(roomId, BotUserId, [new NewEvent("m.room.member", userId, await param.InviteContent(userId, ct))], null, ct);
        }
        finally
        {
            _membership.Release();
        }
    }

    // ---- commands

    sealed record Pending(string RoomId, string EventId, string Sender, string Body);

    async Task Listen(CancellationToken ct)
    {
        var queue = Channel.CreateBounded<Pending>(new BoundedChannelOptions(100) { FullMode = BoundedChannelFullMode.DropWrite });
        var worker = Work(queue.Reader, ct);
        long position = -1;
        try
        {
            await foreach (var advance in stream.Subscribe(ct))
            {
                if (position < 0)
                {
                    position = advance.Position;
                    continue;
                }
                // Events in the admin room concern its members, the bot among them.
                if (advance.UserIds.Contains(BotUserId) || advance.UserIds.Contains("*"))
                    foreach (var (_, roomId, e) in rooms.StreamAfter(position, advance.Position))
                        if (roomId == RoomId && Command(e) is { } body)
                            queue.Writer.TryWrite(new Pending(roomId, e.EventId, e.Sender, body));
                position = Math.Max(position, advance.Position);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested) { }
        queue.Writer.TryComplete();
        await worker;
    }

    /// <summary>The text of a message that is a command (a local user's m.room.message, not the bot's, not an edit).</summary>
    string? Command(StoredEvent e)
    {
        if (e.Type != "m.room.message" || e.StateKey is not null || e.Sender == BotUserId || !AuthRules.IsLocal(e.Sender, config.ServerName)) return null;
        if (e.Rejected is not null || e.SoftFailed || e.Content["m.new_content"] is not null) return null;
        return e.Content["body"] is JsonValue v && v.TryGetValue(out string? body) && AdminCommands.IsCommand(body, BotUserId) ? body : null;
    }

    async Task Work(ChannelReader<Pending> queue, CancellationToken ct)
    {
        try
        {
            await foreach (var p in queue.ReadAllAsync(ct))
            {
                string answer;
                try
                {
                    answer = await commands.RunAsync(p.Body, p.Sender, ct);
                }
                catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
                {
                    LogCommandFailed(log, p.Body, e);
                    answer = "Error: the command failed unexpectedly (see the server's log).";
                }
                try
                {
                    var content = Notice(answer);
                    content["m.relates_to"] = new JsonObject { ["m.in_reply_to"] = new JsonObject { ["event_id"] = p.EventId } };
                    await sender.SendAsync(p.RoomId, BotUserId, [new NewEvent("m.room.message", null, content)], null, ct);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    LogReplyFailed(log, e.Message);
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested) { }
    }

    /// <summary>An m.notice with the Markdown as its body and rendered as its formatted_body.</summary>
    public static JsonObject Notice(string markdown) => new()
    {
        ["msgtype"] = "m.notice",
        ["body"] = markdown,
        ["format"] = "org.matrix.custom.html",
        ["formatted_body"] = Markdig.Markdown.ToHtml(markdown, Markdown).TrimEnd('\n'),
    };

    [LoggerMessage(Level = LogLevel.Information, Message = "Created the admin room {RoomId} ({Alias})")]
    static partial void LogCreated(ILogger log, string roomId, string alias);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Setting up the admin room failed, retrying: {Error}")]
    static partial void LogSetupRetry(ILogger log, string error);

    [LoggerMessage(Level = LogLevel.Error, Message = "The admin command {Command} failed")]
    static partial void LogCommandFailed(ILogger log, string command, Exception e);

    [LoggerMessage(Level = LogLevel.Warning, Message = "The admin bot's answer could not be sent: {Error}")]
    static partial void LogReplyFailed(ILogger log, string error);
}
