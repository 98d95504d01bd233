using System.Text.RegularExpressions;
using Conduit.Common.Config;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Conduit.Common.Appservices;

/// <summary>One namespace entry of a registration: a regex (matched against the whole ID) and whether the application
/// service claims it for itself alone.</summary>
public sealed record AppserviceNamespace(bool Exclusive, Regex Regex)
{
    public bool Matches(string id)
    {
        try { return Regex.IsMatch(id); }
        catch (RegexMatchTimeoutException) { return false; }
    }
}

/// <summary>
/// An application service registration (spec: application-service-api "Registration"), read from a file named by the
/// config key <c>app_service_config_files</c> in Synapse's YAML format.
/// </summary>
public sealed record AppserviceRegistration
{
    public required string Id { get; init; }
    /// <summary>Where the homeserver reaches the application service; null: it is never contacted.</summary>
    public string? Url { get; init; }
    public required string AsToken { get; init; }
    public required string HsToken { get; init; }
    public required string SenderLocalpart { get; init; }
    public IReadOnlyList<AppserviceNamespace> Users { get; init; } = [];
    public IReadOnlyList<AppserviceNamespace> Aliases { get; init; } = [];
    public IReadOnlyList<AppserviceNamespace> Rooms { get; init; } = [];
    /// <summary>Whether its users are rate limited; Synapse's default is true.</summary>
    public bool RateLimited { get; init; } = true;
    public IReadOnlyList<string> Protocols { get; init; } = [];
    /// <summary>receive_ephemeral (or MSC2409's de.sorunome.msc2409.push_ephemeral).</summary>
    public bool ReceiveEphemeral { get; init; }
    /// <summary>org.matrix.msc3202: device masquerading and device lists/OTK counts for the appservice.</summary>
    public bool Msc3202 { get; init; }
    /// <summary>The file it was read from, or who registered it at runtime, for messages.</summary>
    public string Source { get; init; } = "";
    /// <summary>Registered by an admin while the server runs (kept by the keys service), not read from a config file.</summary>
    public bool Runtime { get; init; }
    /// <summary>The registration's YAML as it was given.</summary>
    public string Yaml { get; init; } = "";

    /// <summary>The appservice's own user: @sender_localpart:server.</summary>
    public string SenderUserId(string serverName) => $"@{SenderLocalpart}:{serverName}";

    /// <summary>Whether the user ID is the sender or in one of the user namespaces (exclusive or not).</summary>
    public bool IsInterestedInUser(string userId, string serverName)
        => userId == SenderUserId(serverName) || IsUserInNamespace(userId);

    /// <summary>
    /// Whether events and ephemeral events of the room concern it (spec: application-service-api, "Pushing events";
    /// Synapse's is_interested_in_room): the room ID is in its room namespaces, one of the room's aliases in its alias
    /// namespaces, or one of the room's (joined) members is its user.
    /// </summary>
    public bool IsInterestedInRoom(string roomId, IEnumerable<string> aliases, IEnumerable<string> members, string serverName)
        => Rooms.Any(n => n.Matches(roomId)) || aliases.Any(IsAliasInNamespace)
            || members.Any(u => IsInterestedInUser(u, serverName));

    /// <summary>Whether the user ID is in one of its exclusive user namespaces.</summary>
    public bool ClaimsUserExclusively(string userId) => Users.Any(n => n.Exclusive && n.Matches(userId));

    /// <summary>Whether the user ID is in one of its user namespaces (exclusive or not): the users it may be asked about.</summary>
    public bool IsUserInNamespace(string userId) => Users.Any(n => n.Matches(userId));

    /// <summary>Whether the room alias is in one of its alias namespaces (exclusive or not): the aliases it may be asked about.</summary>
    public bool IsAliasInNamespace(string alias) => Aliases.Any(n => n.Matches(alias));

    /// <summary>Whether the room alias is in one of its exclusive alias namespaces.</summary>
    public bool ClaimsAliasExclusively(string alias) => Aliases.Any(n => n.Exclusive && n.Matches(alias));

    /// <summary>
    /// M_EXCLUSIVE unless <paramref name="callerAppserviceId"/> may create <paramref name="alias"/>: an alias in an
    /// appservice's exclusive alias namespace is that appservice's alone (spec: application-service-api, "Namespaces").
    /// </summary>
    public static void RequireAliasAllowed(IEnumerable<AppserviceRegistration> all, string alias, string? callerAppserviceId)
    {
        if (all.FirstOrDefault(r => r.Id != callerAppserviceId && r.ClaimsAliasExclusively(alias)) is { } owner)
            throw Http.Err.Exclusive($"This room alias is reserved by the application service '{owner.Id}'");
    }
}

/// <summary>Reads and checks the registration files; every error is a <see cref="ConfigException"/> naming the file.</summary>
public static class AppserviceLoader
{
    /// <summary>How long one namespace regex may take on one ID.</summary>
    public static readonly TimeSpan RegexTimeout = TimeSpan.FromMilliseconds(100);

    public static IReadOnlyList<AppserviceRegistration> LoadFiles(IEnumerable<string> paths, string configSource)
    {
        var list = new List<AppserviceRegistration>();
        foreach (var path in paths)
        {
            string text;
            try { text = File.ReadAllText(path); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new ConfigException($"{configSource}: key 'global.app_service_config_files' names \"{path}\", which cannot be read: {e.Message}");
            }
            list.Add(Parse(text, path));
        }
        CheckTogether(list);
        return list;
    }

    /// <summary>One registration file's text; <paramref name="source"/> names it in errors.</summary>
    public static AppserviceRegistration Parse(string text, string source)
    {
        var stream = new YamlStream();
        try { stream.Load(new StringReader(text)); }
        catch (YamlException e)
        {
            throw new ConfigException($"{source}: not a valid application service registration (YAML error at line {e.Start.Line}: {e.Message})");
        }
        if (stream.Documents.Count == 0 || stream.Documents[0].RootNode is not YamlMappingNode root)
            throw new ConfigException($"{source}: an application service registration must be a YAML mapping with id, url, as_token, hs_token, sender_localpart and namespaces");

        string Required(string key)
        {
            var v = Scalar(root, key, source);
            if (string.IsNullOrEmpty(v)) throw new ConfigException($"{source}: application service registration lacks '{key}'");
            return v;
        }

        var id = Required("id");
        var asToken = Required("as_token");
        var hsToken = Required("hs_token");
        var sender = Required("sender_localpart");
        if (asToken == hsToken)
            throw new ConfigException($"{source}: application service '{id}' has the same as_token and hs_token; they must differ");
        if (!Ids.IsValidLocalpart(sender))
            throw new ConfigException($"{source}: application service '{id}' has sender_localpart \"{sender}\", which is not a valid user localpart");
        if (sender == Admin.AdminBot.Localpart)
            throw new ConfigException($"{source}: application service '{id}' has sender_localpart \"{sender}\", the server's admin bot; choose another");
        if (!root.Children.ContainsKey(new YamlScalarNode("url")))
            throw new ConfigException($"{source}: application service registration lacks 'url' (write url: null for one the homeserver never contacts)");
        var url = Scalar(root, "url", source);
        if (url is { Length: > 0 } && !(Uri.TryCreate(url, UriKind.Absolute, out var u) && (u.Scheme == "http" || u.Scheme == "https")))
            throw new ConfigException($"{source}: application service '{id}' has url \"{url}\", which is not an http(s) URL");
        if (url is { Length: 0 }) url = null;

        var namespaces = Child(root, "namespaces") as YamlMappingNode;
        if (Child(root, "namespaces") is { } ns && ns is not YamlMappingNode && !IsNull(ns))
            throw new ConfigException($"{source}: application service '{id}': 'namespaces' must be a mapping with users, aliases and rooms");

        return new AppserviceRegistration
        {
            Id = id,
            Url = url,
            AsToken = asToken,
            HsToken = hsToken,
            SenderLocalpart = sender,
            Users = Namespaces(namespaces, "users", source, id),
            Aliases = Namespaces(namespaces, "aliases", source, id),
            Rooms = Namespaces(namespaces, "rooms", source, id),
            RateLimited = Bool(root, "rate_limited", source, true),
            Protocols = Child(root, "protocols") is YamlSequenceNode protocols
                ? protocols.Children.Select(p => (p as YamlScalarNode)?.Value ?? throw new ConfigException($"{source}: application service '{id}': 'protocols' must be a list of strings")).ToList()
                : [],
            ReceiveEphemeral = Bool(root, "receive_ephemeral", source, false) || Bool(root, "de.sorunome.msc2409.push_ephemeral", source, false),
            Msc3202 = Bool(root, "org.matrix.msc3202", source, false),
            Source = source,
            Yaml = text,
        };
    }

    /// <summary>
    /// The checks that concern registrations together (the config files' and the runtime ones as one set): unique ids,
    /// no as_token or hs_token used twice, and no exclusive namespace claimed by two of them with the same regex
    /// (whether two different regexes overlap cannot be decided in general; Synapse and Conduit check neither).
    /// Each error names the later registration, then the earlier one it clashes with.
    /// </summary>
    public static void CheckTogether(IReadOnlyList<AppserviceRegistration> list)
    {
        for (var i = 0; i < list.Count; i++)
            for (var j = 0; j < i; j++)
            {
                var (a, b) = (list[i], list[j]);
                if (a.Id == b.Id)
                    throw new ConfigException($"{a.Source}: application service id '{a.Id}' is also the id of the one in {b.Source}; ids must be unique");
                var tokensA = new[] { a.AsToken, a.HsToken };
                if (tokensA.Contains(b.AsToken) || tokensA.Contains(b.HsToken))
                    throw new ConfigException($"{a.Source}: application service '{a.Id}' shares a token with '{b.Id}' ({b.Source}); every as_token and hs_token must be unique");
                foreach (var (kind, mine, theirs) in new[] { ("users", a.Users, b.Users), ("aliases", a.Aliases, b.Aliases), ("rooms", a.Rooms, b.Rooms) })
                    if (mine.Where(n => n.Exclusive).Select(n => n.Regex.ToString()).Intersect(theirs.Where(n => n.Exclusive).Select(n => n.Regex.ToString())).FirstOrDefault() is { } same)
                        throw new ConfigException($"{a.Source}: application service '{a.Id}' claims the exclusive {kind} namespace \"{Pattern(same)}\" that '{b.Id}' ({b.Source}) claims already");
            }
    }

    /// <summary>The regex as written in the registration (without the anchors added to match the whole ID).</summary>
    public static string Pattern(string anchored) => anchored.StartsWith("^(?:", StringComparison.Ordinal) && anchored.EndsWith(")$", StringComparison.Ordinal) ? anchored[4..^2] : anchored;

    /// <summary>
    /// The registration's YAML with its as_token and hs_token replaced by "&lt;redacted&gt;": what an admin may be shown
    /// in a room whose history every later admin reads (the tokens stay with whoever wrote the registration).
    /// </summary>
    public static string Redacted(string yaml)
    {
        var stream = new YamlStream();
        try { stream.Load(new StringReader(yaml)); }
        catch (YamlException) { return "(not valid YAML)"; }
        if (stream.Documents.Count == 0 || stream.Documents[0].RootNode is not YamlMappingNode root) return "(not a YAML mapping)";
        foreach (var key in new[] { "as_token", "hs_token" })
            if (root.Children.ContainsKey(new YamlScalarNode(key))) root.Children[new YamlScalarNode(key)] = new YamlScalarNode("<redacted>");
        var w = new StringWriter();
        stream.Save(w, assignAnchors: false);
        // The document end marker ("...") the serializer writes after a document.
        return w.ToString().TrimEnd().TrimEnd('.').TrimEnd();
    }

    static IReadOnlyList<AppserviceNamespace> Namespaces(YamlMappingNode? namespaces, string kind, string source, string id)
    {
        if (namespaces is null) return [];
        var node = Child(namespaces, kind);
        if (node is null || IsNull(node)) return [];
        if (node is not YamlSequenceNode seq)
            throw new ConfigException($"{source}: application service '{id}': 'namespaces.{kind}' must be a list of {{exclusive, regex}}");
        var list = new List<AppserviceNamespace>();
        foreach (var entry in seq.Children)
        {
            if (entry is not YamlMappingNode m)
                throw new ConfigException($"{source}: application service '{id}': every entry of 'namespaces.{kind}' must be a mapping with exclusive and regex");
            var pattern = Scalar(m, "regex", source);
            if (string.IsNullOrEmpty(pattern))
                throw new ConfigException($"{source}: application service '{id}': an entry of 'namespaces.{kind}' lacks 'regex'");
            if (Child(m, "exclusive") is null)
                throw new ConfigException($"{source}: application service '{id}': an entry of 'namespaces.{kind}' lacks 'exclusive' (true or false)");
            Regex regex;
            try { regex = new Regex($"^(?:{pattern})$", RegexOptions.CultureInvariant, RegexTimeout); }
            catch (ArgumentException e)
            {
                throw new ConfigException($"{source}: application service '{id}': 'namespaces.{kind}' has regex \"{pattern}\", which is not a valid regular expression: {e.Message}");
            }
            list.Add(new AppserviceNamespace(Bool(m, "exclusive", source, false), regex));
        }
        return list;
    }

    static YamlNode? Child(YamlMappingNode m, string key) => m.Children.TryGetValue(new YamlScalarNode(key), out var v) ? v : null;

    static bool IsNull(YamlNode node) => node is YamlScalarNode { Style: not (ScalarStyle.SingleQuoted or ScalarStyle.DoubleQuoted) } s
        && (s.Value is null or "" or "~" or "null" or "Null" or "NULL");

    static string? Scalar(YamlMappingNode m, string key, string source)
    {
        var node = Child(m, key);
        if (node is null || IsNull(node)) return null;
        if (node is not YamlScalarNode s) throw new ConfigException($"{source}: '{key}' in the application service registration must be a string");
        return s.Value;
    }

    static bool Bool(YamlMappingNode m, string key, string source, bool fallback)
    {
        var v = Scalar(m, key, source);
        if (v is null) return fallback;
        return v.ToLowerInvariant() switch
        {
            "true" or "yes" or "on" => true,
            "false" or "no" or "off" => false,
            _ => throw new ConfigException($"{source}: '{key}' in the application service registration must be true or false, not \"{v}\""),
        };
    }
}
