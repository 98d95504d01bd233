using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Admin;
using Conduit.Common.Config;
using Conduit.Common.Http;

namespace Conduit.Rooms.Admin;

/// <summary>A command that cannot be run as given: its message is the bot's whole answer.</summary>
public sealed class CommandError(string message) : Exception(message);

/// <summary>
/// The admin room's commands, in the two forms admins know: <c>!admin &lt;group&gt; &lt;command&gt; [args]</c> (groups
/// users, rooms, media, server, federation, tokens, appservices; as tuwunel and the issue name them), and Conduit's
/// <c>@conduit:{server_name}: &lt;command&gt; [args]</c> with Conduit's kebab-case names (list-local-users, create-user, ...),
/// which run the same code. Input a command needs (sign-json and verify-json's JSON, register-appservice's YAML) follows
/// it in a ``` code block.
/// Each command is an admin API request made as the admin who typed it (<see cref="InternalCalls"/>), so it does and
/// refuses exactly what that request does; the few with no request of their own (show-config, remove-alias) act here.
/// Only a server admin's command runs: anyone else's gets a refusal.
/// </summary>
public sealed class AdminCommands(RoomStore rooms, InternalCalls calls, DeploymentOps deployment, GlobalConfig config)
{
    public const string Prefix = "!admin";

    sealed record Args(string Sender, IReadOnlyList<string> Words, string? Block)
    {
        public Caller Caller => new(Sender, "admin-room", IsAdmin: true);
        public string Word(int i, string what) => i < Words.Count ? Words[i] : throw new CommandError($"Missing {what}.");
        public string? Opt(int i) => i < Words.Count ? Words[i] : null;
        public bool Flag(string name) => Words.Contains(name, StringComparer.OrdinalIgnoreCase);
        /// <summary>The words that are not --flags.</summary>
        public IReadOnlyList<string> Plain => Words.Where(w => !w.StartsWith("--", StringComparison.Ordinal)).ToList();
    }

    sealed record Command(string Group, string Name, string Usage, string Help, Func<Args, CancellationToken, Task<string>> Run);

    /// <summary>Conduit's command names, each with the group and command it runs (its arguments as Conduit's).</summary>
    static readonly Dictionary<string, (string Group, string Name)> ConduitNames = new(StringComparer.OrdinalIgnoreCase)
    {
        ["list-local-users"] = ("users", "list"),
        ["create-user"] = ("users", "create"),
        ["reset-password"] = ("users", "reset-password"),
        ["deactivate-user"] = ("users", "deactivate"),
        ["make-user-admin"] = ("users", "make-admin"),
        ["deactivate-all"] = ("users", "deactivate-all"),
        ["purge-media-from-users"] = ("media", "delete-user"),
        ["list-rooms"] = ("rooms", "list"),
        ["remove-alias"] = ("rooms", "remove-alias"),
        ["purge-history"] = ("rooms", "purge-history"),
        ["delete-room"] = ("rooms", "delete"),
        ["disable-room"] = ("federation", "disable-room"),
        ["enable-room"] = ("federation", "enable-room"),
        ["list-media"] = ("media", "list"),
        ["purge-media"] = ("media", "delete"),
        ["block-media"] = ("media", "block"),
        ["purge-media-before"] = ("media", "purge-before"),
        ["show-config"] = ("server", "show-config"),
        ["memory-usage"] = ("server", "memory-usage"),
        ["clear-service-caches"] = ("server", "clear-cache"),
        ["clear-database-caches"] = ("server", "clear-cache"),
        ["server-stats"] = ("server", "stats"),
        ["backup"] = ("server", "backup"),
        ["get-pdu"] = ("debug", "get-pdu"),
        ["get-auth-chain"] = ("debug", "get-auth-chain"),
        ["sign-json"] = ("debug", "sign-json"),
        ["verify-json"] = ("debug", "verify-json"),
        ["list-registration-tokens"] = ("tokens", "list"),
        ["register-appservice"] = ("appservices", "register"),
        ["unregister-appservice"] = ("appservices", "unregister"),
        ["list-appservices"] = ("appservices", "list"),
    };

    static readonly string[] GroupOrder = ["users", "rooms", "media", "server", "federation", "tokens", "appservices", "debug"];

    readonly Dictionary<(string, string), Command> _commands = [];

    string Bot => AdminBot.UserId(config.ServerName);

    /// <summary>Whether a message's text is addressed to the bot as a command (either form).</summary>
    public static bool IsCommand(string body, string botUserId)
    {
        var t = body.TrimStart();
        return StartsWithWord(t, Prefix) || ConduitForm(t, botUserId) is not null;
    }

    static bool StartsWithWord(string text, string word)
        => text.StartsWith(word, StringComparison.OrdinalIgnoreCase) && (text.Length == word.Length || char.IsWhiteSpace(text[word.Length]));

    /// <summary>The command after Conduit's address ("@conduit:example.org: ", or the bot's name as a client's mention
    /// pill leaves it, "Conduit: "), or null.</summary>
    static string? ConduitForm(string text, string botUserId)
    {
        foreach (var address in new[] { botUserId + ":", AdminBot.DisplayName + ":" })
            if (text.StartsWith(address, StringComparison.OrdinalIgnoreCase)) return text[address.Length..];
        return null;
    }

    /// <summary>Runs a command typed by <paramref name="sender"/> and answers the bot's reply (Markdown).</summary>
    public async Task<string> RunAsync(string body, string sender, CancellationToken ct)
    {
        if (_commands.Count == 0) Register();
        var (line, block) = SplitBlock(body.Trim());
        List<string> words;
        Command? command;
        if (StartsWithWord(line, Prefix))
        {
            words = Words(line[Prefix.Length..]);
            if (words.Count == 0 || words[0] is "help" or "-h" or "--help")
                return words.Count > 1 ? GroupHelp(words[1]) : Help();
            var group = words[0].ToLowerInvariant();
            if (!GroupOrder.Contains(group)) return $"Unknown command group `{words[0]}`.\n\n{Help()}";
            if (words.Count == 1 || words[1] is "help" or "-h" or "--help") return GroupHelp(group);
            if (!_commands.TryGetValue((group, words[1].ToLowerInvariant()), out command))
                return $"Unknown command `{group} {words[1]}`.\n\n{GroupHelp(group)}";
            words = words[2..];
        }
        else
        {
            words = Words(ConduitForm(line, Bot) ?? "");
            if (words.Count == 0 || words[0] is "help" or "-h" or "--help") return ConduitHelp();
            if (!ConduitNames.TryGetValue(words[0], out var target)) return $"Unknown command `{words[0]}`.\n\n{ConduitHelp()}";
            command = _commands[target];
            words = words[1..];
        }
        if (words.Count > 0 && words[0] is "-h" or "--help") return CommandHelp(command);

        // A refusal, never an effect: asked of keys now, so a demoted admin's next command is refused.
        var admin = await calls.SendAsync("GET", $"/_synapse/admin/v1/users/{Esc(sender)}/admin", null, new Caller(Bot, "admin-room", IsAdmin: true), ct);
        if (!admin.Ok || admin.Object["admin"]?.GetValue<bool>() != true)
            return "You are not a server admin: only server admins may run commands here. Nothing was done.";
        try
        {
            return await command.Run(new Args(sender, words, block), ct);
        }
        catch (CommandError e)
        {
            return $"Error: {e.Message}\n\nUsage: `{command.Usage}`";
        }
    }

    void Add(string group, string name, string args, string help, Func<Args, CancellationToken, Task<string>> run)
        => _commands[(group, name)] = new Command(group, name, $"!admin {group} {name}{(args.Length > 0 ? " " + args : "")}", help, run);

    void Register()
    {
        // ---- users
        Add("users", "list", "", "List local accounts (guests and deactivated accounts left out).", async (a, ct) =>
        {
            var users = await All("/_synapse/admin/v2/users?guests=false&order_by=name", "users", a, ct);
            return $"{users.Count} local accounts:\n\n" + Table(["User ID", "Display name", "Admin", "Created"],
                users.Select(u => new[] { Str(u, "name"), Str(u, "displayname"), u["admin"]?.GetValue<bool>() == true ? "yes" : "", Date(u["creation_ts"]) }));
        });
        Add("users", "create", "<username> [password] [--admin]", "Create an account; a password is generated when none is given.", async (a, ct) =>
        {
            var words = a.Plain;
            var userId = LocalUser(a.Word(0, "the username"));
            var password = words.Count > 1 ? words[1] : Ids.Random(20);
            var path = "/_synapse/admin/v2/users/" + Esc(userId);
            if ((await calls.SendAsync("GET", path, null, a.Caller, ct)).Ok) throw new CommandError($"{userId} already exists.");
            await Call("PUT", path, new JsonObject { ["password"] = password, ["admin"] = a.Flag("--admin") }, a, ct);
            return $"Created {userId}{(a.Flag("--admin") ? " (server admin)" : "")} with the password `{password}`.";
        });
        Add("users", "deactivate", "<user> [--leave-rooms]", "Deactivate an account: it is logged out everywhere and leaves every room (as the spec's deactivation does).", async (a, ct) =>
        {
            var userId = LocalUser(a.Plain.FirstOrDefault() ?? throw new CommandError("Missing the user."));
            await Call("POST", "/_synapse/admin/v1/deactivate/" + Esc(userId), new JsonObject { ["erase"] = false }, a, ct);
            return $"Deactivated {userId}: its devices are logged out and it has left its rooms.";
        });
        Add("users", "deactivate-all", "```USER...```", "Deactivate every account listed (one per line in a code block, or as arguments).", async (a, ct) =>
        {
            var users = Listed(a).Select(LocalUser).ToList();
            if (users.Count == 0) throw new CommandError("List the users in a code block after the command.");
            var failed = new List<string>();
            foreach (var userId in users)
            {
                var r = await calls.SendAsync("POST", "/_synapse/admin/v1/deactivate/" + Esc(userId), new JsonObject { ["erase"] = false }, a.Caller, ct);
                if (!r.Ok) failed.Add($"{userId} ({r.Error})");
            }
            return $"Deactivated {users.Count - failed.Count} of {users.Count} accounts." + (failed.Count > 0 ? " Not deactivated: " + string.Join(", ", failed) : "");
        });
        Add("users", "reset-password", "<user> [password]", "Set a new password (generated when none is given) and log the account out everywhere.", async (a, ct) =>
        {
            var userId = LocalUser(a.Word(0, "the user"));
            var password = a.Opt(1) ?? Ids.Random(20);
            await Call("POST", "/_synapse/admin/v1/reset_password/" + Esc(userId), new JsonObject { ["new_password"] = password, ["logout_devices"] = true }, a, ct);
            return $"The password of {userId} is now `{password}`; its devices were logged out.";
        });
        Add("users", "make-admin", "<user>", "Make an account a server admin (it is invited here).", async (a, ct) =>
        {
            var userId = LocalUser(a.Word(0, "the user"));
            await Call("PUT", $"/_synapse/admin/v1/users/{Esc(userId)}/admin", new JsonObject { ["admin"] = true }, a, ct);
            return $"{userId} is now a server admin and has been invited to this room.";
        });

        // ---- rooms
        Add("rooms", "list", "", "List the rooms this server knows, largest first.", async (a, ct) =>
        {
            var list = await All("/_synapse/admin/v1/rooms?order_by=joined_members", "rooms", a, ct);
            return $"{list.Count} rooms:\n\n" + Table(["Room ID", "Name", "Alias", "Members", "Local", "Version"],
                list.Select(r => new[] { Str(r, "room_id"), Str(r, "name"), Str(r, "canonical_alias"), Str(r, "joined_members"), Str(r, "joined_local_members"), Str(r, "version") }));
        });
        Add("rooms", "delete", "<room> [--keep-events]", "Delete a room: every local member leaves, its local aliases and directory entry go, it is blocked, and its events are purged (kept with --keep-events).", async (a, ct) =>
        {
            var roomId = Room(a.Plain.FirstOrDefault() ?? throw new CommandError("Missing the room."));
            var answer = await Call("DELETE", "/_synapse/admin/v2/rooms/" + Esc(roomId), new JsonObject { ["block"] = true, ["purge"] = !a.Flag("--keep-events") }, a, ct);
            return $"Deleting {roomId} (delete ID `{Str(answer, "delete_id")}`): local members leave, aliases are removed, the room is blocked{(a.Flag("--keep-events") ? "" : " and its events are purged")}.";
        });
        Add("rooms", "purge-history", "<room> <before>", "Purge a room's events before a time (a date, a timestamp in ms, or an age such as 30d), keeping its current state.", async (a, ct) =>
        {
            var roomId = Room(a.Word(0, "the room"));
            var before = Time(a.Word(1, "the time"));
            var answer = await Call("POST", "/_synapse/admin/v1/purge_history/" + Esc(roomId), new JsonObject { ["purge_up_to_ts"] = before, ["delete_local_events"] = true }, a, ct);
            return $"Purging the history of {roomId} before {Date(before)} (purge ID `{Str(answer, "purge_id")}`).";
        });
        Add("rooms", "reports", "", "List the events users reported, newest first.", async (a, ct) =>
        {
            var reports = await All("/_synapse/admin/v1/event_reports", "event_reports", a, ct);
            return $"{reports.Count} event reports:\n\n" + Table(["Report", "Received", "Room", "Event", "Sender", "Reporter", "Reason"],
                reports.Select(r => new[] { Str(r, "id"), Date(r["received_ts"]), Str(r, "canonical_alias") is { Length: > 0 } alias ? alias : Str(r, "room_id"), Str(r, "event_id"), Str(r, "sender"), Str(r, "user_id"), Str(r, "reason") }));
        });
        Add("rooms", "block", "<room>", "Block a room: no local user may join it, be invited to it or knock on it.", (a, ct) => Block(a, true, ct));
        Add("rooms", "unblock", "<room>", "Unblock a room.", (a, ct) => Block(a, false, ct));
        Add("rooms", "remove-alias", "<alias>", "Remove a local room alias.", (a, _) =>
        {
            var alias = a.Word(0, "the alias");
            if (alias == AdminBot.RoomAlias(config.ServerName)) throw new CommandError("This room's alias stays: it is how the server finds its admin room.");
            if (!alias.StartsWith('#') || !alias.EndsWith(":" + config.ServerName, StringComparison.Ordinal)) throw new CommandError($"{alias} is not an alias of this server.");
            if (rooms.AliasTarget(alias) is not { } roomId) throw new CommandError($"{alias} does not exist.");
            rooms.DeleteAlias(alias, roomId);
            return Task.FromResult($"Removed {alias} (it pointed to {roomId}).");
        });

        // ---- media
        Add("media", "list", "<user>", "List the media a local user uploaded.", async (a, ct) =>
        {
            var userId = LocalUser(a.Word(0, "the user"));
            var media = await All($"/_synapse/admin/v1/users/{Esc(userId)}/media?order_by=created_ts&dir=b", "media", a, ct);
            return $"{media.Count} files uploaded by {userId}:\n\n" + Table(["MXC URI", "Type", "Size", "Uploaded", "Quarantined"],
                media.Select(m => new[] { $"mxc://{config.ServerName}/{Str(m, "media_id")}", Str(m, "media_type"), Str(m, "media_length"), Date(m["created_ts"]), m["quarantined_by"] is null ? "" : "yes" }));
        });
        Add("media", "delete", "<mxc://server/id>...", "Delete media (local files, or this server's cached copies of remote media); MXC URIs may also come in a code block.",
            (a, ct) => EachMedia(a, "DELETE", "/_synapse/admin/v1/media/{0}/{1}", "Deleted", ct));
        Add("media", "block", "<mxc://server/id>...", "Quarantine media: it is no longer served, and a new upload of the same content is blocked.",
            (a, ct) => EachMedia(a, "POST", "/_synapse/admin/v1/media/quarantine/{0}/{1}", "Quarantined", ct));
        Add("media", "delete-user", "<user>...", "Delete every upload of the users given (as arguments or one per line in a code block).", async (a, ct) =>
        {
            var users = Listed(a).Select(LocalUser).ToList();
            if (users.Count == 0) throw new CommandError("Give at least one user.");
            long total = 0;
            foreach (var userId in users)
                total += (await Call("DELETE", $"/_synapse/admin/v1/users/{Esc(userId)}/media", null, a, ct))["total"]?.GetValue<long>() ?? 0;
            return $"Deleted {total} files uploaded by {string.Join(", ", users)}.";
        });
        Add("media", "purge-before", "<time> [--local-only|--remote-only]", "Delete media last used before a time (a date, a timestamp in ms, or an age such as 30d): local uploads and cached remote media.", async (a, ct) =>
        {
            var before = Time(a.Plain.FirstOrDefault() ?? throw new CommandError("Missing the time."));
            var parts = new List<string>();
            if (!a.Flag("--remote-only"))
            {
                var local = await Call("POST", $"/_synapse/admin/v1/media/delete?before_ts={before}", new JsonObject(), a, ct);
                parts.Add($"{Str(local, "total")} local files");
            }
            if (!a.Flag("--local-only"))
            {
                var remote = await Call("POST", $"/_synapse/admin/v1/purge_media_cache?before_ts={before}", new JsonObject(), a, ct);
                parts.Add($"{Str(remote, "deleted")} cached remote files");
            }
            return $"Deleted {string.Join(" and ", parts)} last used before {Date(before)}.";
        });

        // ---- server
        Add("server", "stats", "", "Counts of accounts, rooms, media and federation peers.", async (a, ct) =>
        {
            var users = await Call("GET", "/_synapse/admin/v2/users?limit=1&guests=false", null, a, ct);
            var rooms = await Call("GET", "/_synapse/admin/v1/rooms?limit=1", null, a, ct);
            var media = await All("/_synapse/admin/v1/statistics/users/media", "users", a, ct);
            var destinations = await calls.SendAsync("GET", "/_synapse/admin/v1/federation/destinations?limit=1", null, a.Caller, ct);
            var version = await Call("GET", "/_synapse/admin/v1/server_version", null, a, ct);
            var rows = new List<string[]>
            {
                new[] { "Server", $"{config.ServerName} ({Str(version, "server_version")})" },
                new[] { "Local accounts", Str(users, "total") },
                new[] { "Rooms", Str(rooms, "total_rooms") },
                new[] { "Local media files", media.Sum(m => m["media_count"]?.GetValue<long>() ?? 0).ToString(CultureInfo.InvariantCulture) },
                new[] { "Local media bytes", media.Sum(m => m["media_length"]?.GetValue<long>() ?? 0).ToString(CultureInfo.InvariantCulture) },
            };
            if (destinations.Ok) rows.Add(["Federation destinations", Str(destinations.Object, "total")]);
            return Table(["", ""], rows);
        });
        Add("server", "show-config", "", "Show the configuration this server runs with (secrets hidden).", (_, _) =>
            Task.FromResult($"The configuration in use (secrets hidden):\n\n```toml\n{ConfigDisplay.Redacted(config).TrimEnd()}\n```"));
        Add("server", "memory-usage", "", "Memory of each process: resident set, managed heap, database caches.", async (_, ct) =>
        {
            var processes = await deployment.MemoryAsync(ct);
            return Table(["Process", "Resident", "Managed heap", "Database cache", "Memtables", "Threads"], processes.OfType<JsonObject>().Select(p => new[]
            {
                Str(p, "role"), Bytes(p["rss_bytes"]), Bytes(p["managed_heap_bytes"]),
                Bytes(p["database"]?["block_cache_usage_bytes"]), Bytes(p["database"]?["memtables_bytes"]), p["error"] is { } e ? "error: " + e : Str(p, "threads"),
            }));
        });
        Add("server", "clear-cache", "", "Empty the in-memory caches of each process (tokens, federation lookups) and return freed memory.", async (_, ct) =>
        {
            var processes = await deployment.ClearCachesAsync(ct);
            return "Caches cleared:\n\n" + Table(["Process", "Cache", "Entries dropped"], processes.OfType<JsonObject>().SelectMany(p =>
                p["cleared"] is JsonObject c && c.Count > 0 ? c.Select(kv => new[] { Str(p, "role"), kv.Key, kv.Value?.ToString() ?? "" }) : [new[] { Str(p, "role"), p["error"]?.ToString() ?? "(none)", "" }]));
        });
        Add("server", "backup", "", "Take an online backup of every database into the configured backup folder ([global.backup]).", async (_, ct) =>
        {
            var backups = await deployment.BackupAsync(ct);
            if (backups.Count == 0) throw new CommandError("No process here has a database to back up.");
            return "Backups written:\n\n" + Table(["Process", "Folder"], backups.OfType<JsonObject>().Select(b => new[] { Str(b, "role"), b["error"] is { } e ? "error: " + e : Str(b, "path") }));
        });

        // ---- federation
        Add("federation", "destinations", "", "Other servers this one sends to: queue and backoff state.", async (a, ct) =>
        {
            var list = await All("/_synapse/admin/v1/federation/destinations", "destinations", a, ct);
            return $"{list.Count} destinations:\n\n" + Table(["Server", "Failing since", "Retry interval", "Last retry", "Queued PDUs", "Queued EDUs"],
                list.Select(d => new[] { Str(d, "destination"), Date(d["failure_ts"]), d["retry_interval"]?.GetValue<long>() is > 0 and var ms ? $"{ms / 1000} s" : "", Date(d["retry_last_ts"]), Str(d, "queued_pdus"), Str(d, "queued_edus") }));
        });
        Add("federation", "disable-room", "<room>", "Stop federating a room: nothing is sent to or accepted from other servers for it.", (a, ct) => Federation(a, true, ct));
        Add("federation", "enable-room", "<room>", "Federate a room again.", (a, ct) => Federation(a, false, ct));
        Add("federation", "reset-connection", "<server>", "Forget a destination's backoff and send to it at once.", async (a, ct) =>
        {
            var server = a.Word(0, "the server");
            await Call("POST", $"/_synapse/admin/v1/federation/destinations/{Esc(server)}/reset_connection", new JsonObject(), a, ct);
            return $"The connection to {server} was reset: sending resumes now.";
        });

        // ---- tokens
        Add("tokens", "list", "", "List registration tokens.", async (a, ct) =>
        {
            var list = await Call("GET", "/_synapse/admin/v1/registration_tokens", null, a, ct);
            var tokens = list["registration_tokens"]?.AsArray().OfType<JsonObject>().ToList() ?? [];
            return $"{tokens.Count} registration tokens:\n\n" + Table(["Token", "Uses allowed", "Pending", "Completed", "Expires"],
                tokens.Select(t => new[] { Str(t, "token"), t["uses_allowed"] is null ? "unlimited" : Str(t, "uses_allowed"), Str(t, "pending"), Str(t, "completed"), Date(t["expiry_time"]) }));
        });
        Add("tokens", "create", "[token] [--uses N] [--expires <time>]", "Create a registration token (generated when not given).", async (a, ct) =>
        {
            var body = new JsonObject();
            for (var i = 0; i < a.Words.Count; i++)
                switch (a.Words[i])
                {
                    case "--uses":
                        body["uses_allowed"] = int.TryParse(a.Word(i + 1, "the number of uses"), NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : throw new CommandError("--uses takes a number.");
                        i++;
                        break;
                    case "--expires":
                        body["expiry_time"] = Time(a.Word(i + 1, "the expiry"), future: true);
                        i++;
                        break;
                    case var w when w.StartsWith("--", StringComparison.Ordinal):
                        throw new CommandError($"Unknown option {w}.");
                    case var w:
                        body["token"] = w;
                        break;
                }
            var t = await Call("POST", "/_synapse/admin/v1/registration_tokens/new", body, a, ct);
            return $"Created the registration token `{Str(t, "token")}` ({(t["uses_allowed"] is null ? "unlimited uses" : Str(t, "uses_allowed") + " uses")}{(t["expiry_time"] is null ? "" : ", expires " + Date(t["expiry_time"]))}).";
        });
        Add("tokens", "delete", "<token>", "Delete a registration token.", async (a, ct) =>
        {
            var token = a.Word(0, "the token");
            await Call("DELETE", "/_synapse/admin/v1/registration_tokens/" + Esc(token), null, a, ct);
            return $"Deleted the registration token `{token}`.";
        });

        // ---- appservices (Conduit's register-appservice, unregister-appservice, list-appservices)
        Add("appservices", "register", "```yaml <registration>```", "Register an application service: its registration (Synapse's YAML) in a code block after the command. A runtime registration of the same id is replaced; a config file's cannot be.", async (a, ct) =>
        {
            if (string.IsNullOrWhiteSpace(a.Block)) throw new CommandError("Put the registration (YAML) in a code block (```) after the command.");
            var r = await Call("POST", "/_conduit/admin/v1/appservices", new JsonObject { ["registration"] = a.Block }, a, ct);
            return r["replaced"]?.GetValue<bool>() == true
                ? $"Replaced the registration of the application service `{Str(r, "id")}`."
                : $"Registered the application service `{Str(r, "id")}`: its as_token works from now on.";
        });
        Add("appservices", "unregister", "<id>", "Remove an application service registered here (one from a config file stays until the file is changed). Its users' accounts stay.", async (a, ct) =>
        {
            var id = a.Word(0, "the application service's id");
            await Call("DELETE", "/_conduit/admin/v1/appservices/" + Esc(id), null, a, ct);
            return $"Unregistered the application service `{id}`: its as_token no longer works.";
        });
        Add("appservices", "list", "", "List the registered application services (config files' and those registered here).", async (a, ct) =>
        {
            var list = (await Call("GET", "/_conduit/admin/v1/appservices", null, a, ct))["appservices"]?.AsArray().OfType<JsonObject>().ToList() ?? [];
            return $"{list.Count} application services:\n\n" + Table(["ID", "Sender", "URL", "Registered"],
                list.Select(r => new[] { Str(r, "id"), Str(r, "sender"), Str(r, "url"), r["runtime"]?.GetValue<bool>() == true ? $"here, by {Str(r, "registered_by")} {Date(r["registered_ts"])}" : "config file " + Str(r, "source") }));
        });
        Add("appservices", "show", "<id>", "Show an application service's registration (its as_token and hs_token redacted).", async (a, ct) =>
        {
            var id = a.Word(0, "the application service's id");
            var r = await Call("GET", "/_conduit/admin/v1/appservices/" + Esc(id), null, a, ct);
            var where = r["runtime"]?.GetValue<bool>() == true ? $"registered here by {Str(r, "registered_by")} {Date(r["registered_ts"])}" : $"from the config file {Str(r, "source")}";
            return $"The application service `{id}` ({where}; tokens redacted):\n\n```yaml\n{Str(r, "registration")}\n```";
        });

        // ---- debug (Conduit's get-pdu, get-auth-chain, sign-json, verify-json)
        Add("debug", "get-pdu", "<event_id>", "Show an event as stored (PDU format).", async (a, ct) =>
        {
            var e = await Call("GET", "/_synapse/admin/v1/fetch_event/" + Esc(a.Word(0, "the event ID")), null, a, ct);
            return $"```json\n{e["event"]?.ToJsonString(Pretty) ?? "{}"}\n```";
        });
        Add("debug", "get-auth-chain", "<event_id>", "Compute an event's full auth chain.", async (a, ct) =>
        {
            var c = await Call("GET", $"/_conduit/admin/v1/events/{Esc(a.Word(0, "the event ID"))}/auth_chain", null, a, ct);
            return $"The auth chain has {Str(c, "count")} events (computed in {Str(c, "elapsed_ms")} ms).";
        });
        Add("debug", "sign-json", "```json {...}```", "Sign a JSON object with this server's key (the object in a code block).", async (a, ct) =>
        {
            var signed = await Call("POST", "/_conduit/admin/v1/sign_json", BlockJson(a), a, ct);
            return $"```json\n{signed.ToJsonString(Pretty)}\n```";
        });
        Add("debug", "verify-json", "```json {...}```", "Verify a signed JSON object's signatures (the object in a code block).", async (a, ct) =>
        {
            var r = await Call("POST", "/_conduit/admin/v1/verify_json", BlockJson(a), a, ct);
            var valid = r["valid"]?.GetValue<bool>() == true;
            return (valid ? "Signature correct." : "Signature invalid.") + $"\n\n```json\n{r["signatures"]?.ToJsonString(Pretty) ?? "{}"}\n```";
        });
    }

    static readonly System.Text.Json.JsonSerializerOptions Pretty = new() { WriteIndented = true };

    /// <summary>One admin API request per MXC URI given (path format: {0} server, {1} media ID).</summary>
    async Task<string> EachMedia(Args a, string method, string pathFormat, string done, CancellationToken ct)
    {
        var uris = new List<string>();
        foreach (var (server, id) in Mxcs(a))
        {
            await Call(method, string.Format(CultureInfo.InvariantCulture, pathFormat, Esc(server), Esc(id)), null, a, ct);
            uris.Add($"mxc://{server}/{id}");
        }
        return $"{done} {uris.Count} files: {string.Join(", ", uris)}.";
    }

    async Task<string> Block(Args a, bool block, CancellationToken ct)
    {
        var roomId = Room(a.Word(0, "the room"));
        await Call("PUT", $"/_synapse/admin/v1/rooms/{Esc(roomId)}/block", new JsonObject { ["block"] = block }, a, ct);
        return block ? $"Blocked {roomId}: no local user may join it." : $"Unblocked {roomId}.";
    }

    async Task<string> Federation(Args a, bool disabled, CancellationToken ct)
    {
        var roomId = Room(a.Word(0, "the room"));
        await Call("PUT", $"/_conduit/admin/v1/rooms/{Esc(roomId)}/federation", new JsonObject { ["disabled"] = disabled }, a, ct);
        return disabled ? $"Federation is disabled for {roomId}." : $"Federation is enabled again for {roomId}.";
    }

    // ---- calls

    async Task<JsonObject> Call(string method, string path, JsonNode? body, Args a, CancellationToken ct)
    {
        var answer = await calls.SendAsync(method, path, body, a.Caller, ct);
        return answer.Ok ? answer.Object : throw new CommandError(answer.Error);
    }

    /// <summary>Every page of a list (from/next_token or next_batch), at most 10,000 entries.</summary>
    async Task<List<JsonObject>> All(string path, string key, Args a, CancellationToken ct)
    {
        var all = new List<JsonObject>();
        string? from = "0";
        var sep = path.Contains('?') ? '&' : '?';
        while (from is not null && all.Count < 10_000)
        {
            var page = await Call("GET", $"{path}{sep}limit=500&from={from}", null, a, ct);
            all.AddRange(page[key]?.AsArray().OfType<JsonObject>() ?? []);
            from = (page["next_token"] ?? page["next_batch"])?.ToString();
        }
        return all;
    }

    // ---- arguments

    string LocalUser(string s)
    {
        var userId = s.StartsWith('@') ? s : Ids.UserId(s.ToLowerInvariant(), config.ServerName);
        if (!Ids.TrySplit(userId, '@', out _, out var server) || server != config.ServerName) throw new CommandError($"{s} is not a user of this server.");
        return userId;
    }

    /// <summary>A room ID, or a local alias resolved to one.</summary>
    string Room(string s)
    {
        if (s.StartsWith('!')) return s;
        if (s.StartsWith('#')) return rooms.AliasTarget(s) ?? throw new CommandError($"{s} is not an alias of this server.");
        throw new CommandError($"{s} is neither a room ID nor an alias.");
    }

    /// <summary>A point in time: milliseconds since the epoch, a date or date-time (UTC), or an age ("30d", "12h", "15m") before now
    /// (after now with <paramref name="future"/>).</summary>
    internal static long Time(string s, bool future = false)
    {
        if (long.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var ms)) return ms;
        if (s.Length > 1 && long.TryParse(s[..^1], NumberStyles.None, CultureInfo.InvariantCulture, out var n))
        {
            var unit = s[^1] switch { 'd' => TimeSpan.FromDays(1), 'h' => TimeSpan.FromHours(1), 'm' => TimeSpan.FromMinutes(1), 's' => TimeSpan.FromSeconds(1), _ => TimeSpan.Zero };
            if (unit != TimeSpan.Zero) return DateTimeOffset.UtcNow.Add((future ? 1 : -1) * n * unit).ToUnixTimeMilliseconds();
        }
        if (DateTimeOffset.TryParse(s, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var d)) return d.ToUnixTimeMilliseconds();
        throw new CommandError($"`{s}` is not a time: give a date (2026-11-30), a timestamp in milliseconds, or an age such as 30d.");
    }

    /// <summary>The plain arguments and the code block's entries (split on lines, spaces and commas).</summary>
    static List<string> Listed(Args a)
        => a.Plain.Concat(a.Block?.Split((char[])['\n', ' ', '\t', ','], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) ?? []).ToList();

    IEnumerable<(string Server, string Id)> Mxcs(Args a)
    {
        var uris = Listed(a);
        if (uris.Count == 0) throw new CommandError("Give at least one mxc:// URI.");
        foreach (var u in uris)
        {
            var rest = u.StartsWith("mxc://", StringComparison.Ordinal) ? u["mxc://".Length..] : throw new CommandError($"{u} is not an mxc:// URI.");
            var slash = rest.IndexOf('/');
            if (slash <= 0 || slash == rest.Length - 1) throw new CommandError($"{u} is not an mxc:// URI.");
            yield return (rest[..slash], rest[(slash + 1)..]);
        }
    }

    static JsonObject BlockJson(Args a)
    {
        if (a.Block is null) throw new CommandError("Put the JSON object in a code block (```) after the command.");
        try
        {
            return JsonNode.Parse(a.Block) as JsonObject ?? throw new CommandError("The code block must hold a JSON object.");
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new CommandError("The code block is not valid JSON: " + e.Message);
        }
    }

    /// <summary>The first line (the command) and the content of a ``` code block after it, if any.</summary>
    internal static (string Line, string? Block) SplitBlock(string body)
    {
        var fence = body.IndexOf("```", StringComparison.Ordinal);
        if (fence < 0) return (body, null);
        var line = body[..fence].Trim();
        var rest = body[(fence + 3)..];
        var nl = rest.IndexOf('\n');
        // ```json: the info string names the language.
        if (nl >= 0 && !rest[..nl].Contains('{') && !rest[..nl].Contains("mxc://", StringComparison.Ordinal)) rest = rest[(nl + 1)..];
        var end = rest.LastIndexOf("```", StringComparison.Ordinal);
        return (line, (end >= 0 ? rest[..end] : rest).Trim());
    }

    static List<string> Words(string s) => s.Split((char[])[' ', '\t', '\n', '\r'], StringSplitOptions.RemoveEmptyEntries).ToList();

    static string Esc(string s) => Uri.EscapeDataString(s);

    // ---- answers

    static string Str(JsonObject o, string key) => o[key] switch
    {
        null => "",
        JsonValue v when v.TryGetValue(out string? s) => s,
        var n => n.ToJsonString(),
    };

    static string Date(JsonNode? ms) => ms is JsonValue v && v.TryGetValue(out long t) && t > 0
        ? DateTimeOffset.FromUnixTimeMilliseconds(t).UtcDateTime.ToString("yyyy-MM-dd HH:mm 'UTC'", CultureInfo.InvariantCulture) : "";

    static string Date(long ms) => Date(JsonValue.Create(ms));

    static string Bytes(JsonNode? n)
    {
        if (n is not JsonValue v || !v.TryGetValue(out long b)) return "";
        return b >= 1 << 30 ? $"{b / (double)(1 << 30):0.0} GiB" : b >= 1 << 20 ? $"{b / (double)(1 << 20):0.0} MiB" : $"{b / 1024.0:0.0} KiB";
    }

    /// <summary>A Markdown pipe table (cells' pipes and line breaks escaped).</summary>
    static string Table(string[] headers, IEnumerable<string[]> rows)
    {
        static string Cell(string s) => s.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("|", "\\|", StringComparison.Ordinal).Replace('\n', ' ');
        var sb = new StringBuilder();
        sb.Append("| ").AppendJoin(" | ", headers.Select(Cell)).Append(" |\n");
        sb.Append('|').AppendJoin('|', headers.Select(_ => " --- ")).Append("|\n");
        var any = false;
        foreach (var r in rows)
        {
            any = true;
            sb.Append("| ").AppendJoin(" | ", r.Select(Cell)).Append(" |\n");
        }
        return any ? sb.ToString() : "(none)";
    }

    string Help()
    {
        var sb = new StringBuilder("Commands are typed as `!admin <group> <command> [arguments]`; `!admin <group> help` lists a group's commands.\n\n");
        foreach (var g in GroupOrder) sb.Append($"- **{g}**: {string.Join(", ", _commands.Values.Where(c => c.Group == g).Select(c => c.Name))}\n");
        sb.Append($"\nConduit's form works too: `{Bot}: list-local-users` (`{Bot}: help` lists those names).");
        return sb.ToString();
    }

    string GroupHelp(string group)
    {
        group = group.ToLowerInvariant();
        if (!GroupOrder.Contains(group)) return $"Unknown command group `{group}`.\n\n{Help()}";
        var sb = new StringBuilder($"Commands of **{group}**:\n\n");
        foreach (var c in _commands.Values.Where(c => c.Group == group)) sb.Append($"- `{c.Usage}`: {c.Help}\n");
        return sb.ToString();
    }

    static string CommandHelp(Command c) => $"`{c.Usage}`: {c.Help}";

    string ConduitHelp()
    {
        var sb = new StringBuilder($"Conduit's commands, typed as `{Bot}: <command> [arguments]`:\n\n");
        foreach (var (name, target) in ConduitNames) sb.Append($"- `{name}`: {_commands[target].Help}\n");
        sb.Append("\nThe same commands are also `!admin <group> <command>` (`!admin help`).");
        return sb.ToString();
    }
}
