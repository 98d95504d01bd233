using System.Collections;
using Conduit.Common.Events;
using Conduit.Common.Http;
using Tomlyn;
using Tomlyn.Model;

namespace Conduit.Common.Config;

/// <summary>A config that cannot be used; the message names the file, line and key.</summary>
public sealed class ConfigException(string message) : Exception(message);

public sealed record LoadedConfig(GlobalConfig Global, string Source, IReadOnlyList<string> Warnings)
{
    /// <summary>The CONDUIT_* environment variables that set a config key (said at start, so a person sees them).</summary>
    public IReadOnlyList<string> Overrides { get; init; } = [];

    /// <summary>True when no file was read (CONDUIT_CONFIG unset or empty).</summary>
    public bool IsEmbeddedDefault => Source == ConfigLoader.EmbeddedDefaultSource;
}

/// <summary>
/// Reads conduit.toml from CONDUIT_CONFIG (or the embedded default when unset or empty, as Conduit's
/// container images do), then applies CONDUIT_&lt;KEY&gt; environment overrides to [global]
/// (CONDUIT_PORT=8448; nested tables with "__": CONDUIT_WELL_KNOWN__CLIENT, CONDUIT_SERVICES__ROOMS).
/// A CONDUIT_* variable that names no config key is not ours (scripts use CONDUIT_DLL, CONDUIT_URL, ...) and is
/// ignored without a word, while an unknown key in the file is a warning: the file is only ever config.
/// </summary>
public static class ConfigLoader
{
    /// <summary>What a person trying the server gets: localhost on loopback, a database folder in the working
    /// directory, registration open. Binding to loopback only is what makes open registration acceptable.</summary>
    public const string EmbeddedDefault = """
        [global]
        server_name = "localhost"
        address = "127.0.0.1"
        port = 6167
        database_backend = "rocksdb"
        database_path = "conduit_db"
        allow_registration = true
        allow_federation = false
        max_request_size = 20_000_000
        log = "warn"
        """;

    public const string EmbeddedDefaultSource = "(embedded default config)";

    public static LoadedConfig Load(IDictionary? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariables();
        var path = environment["CONDUIT_CONFIG"] as string;
        string text, source;
        if (string.IsNullOrWhiteSpace(path))
        {
            text = EmbeddedDefault;
            source = EmbeddedDefaultSource;
        }
        else
        {
            source = path;
            try { text = File.ReadAllText(path); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new ConfigException($"{path}: cannot read the config file named by CONDUIT_CONFIG: {e.Message}");
            }
        }
        return Parse(text, source, environment);
    }

    public static LoadedConfig Parse(string text, string source, IDictionary? environment = null)
    {
        var file = Deserialize(text, source);
        var where = source; // what an error names: the file, and the variables that changed it
        var overrides = new List<(string Variable, string[] Path, object Value)>();
        foreach (var (variable, keyPath, raw) in EnvOverrides(environment))
            if (IsConfigKey(keyPath, raw, out var value)) overrides.Add((variable, keyPath, value));
        if (overrides.Count > 0)
        {
            var model = TomlSerializer.Deserialize(text, ConfigTomlContext.Default.TomlTable) ?? new TomlTable();
            foreach (var (_, keyPath, value) in overrides) Set(model, keyPath, value);
            where += " with " + string.Join(", ", overrides.Select(o => o.Variable));
            file = Deserialize(TomlSerializer.Serialize(model, ConfigTomlContext.Default.TomlTable), where);
        }
        var warnings = new List<string>();
        foreach (var key in UnknownKeys(file)) warnings.Add($"{source}: unknown config key '{key}' is ignored");
        Validate(file.Global, where);
        file.Global.SetAppservices(Appservices.AppserviceLoader.LoadFiles(file.Global.AppServiceConfigFiles, where));
        return new LoadedConfig(file.Global, source, warnings) { Overrides = overrides.Select(o => o.Variable).ToList() };
    }

    // [global] a.b.c = value, creating the tables on the way.
    static void Set(TomlTable model, string[] keyPath, object value)
    {
        if (!model.TryGetValue("global", out var g) || g is not TomlTable table)
            model["global"] = table = new TomlTable();
        for (var i = 0; i < keyPath.Length - 1; i++)
        {
            if (!table.TryGetValue(keyPath[i], out var sub) || sub is not TomlTable st)
                table[keyPath[i]] = st = new TomlTable();
            table = st;
        }
        table[keyPath[^1]] = value;
    }

    /// <summary>
    /// Whether [global] a.b names a key of the config classes, and the value to give it. The source-generated
    /// deserializer is the catalogue: a document holding only that key is read, and the key is ours unless it lands
    /// in an extension-data dictionary. So a key added to <see cref="GlobalConfig"/> is known here with no list to
    /// keep, and no reflection (Native AOT). A value that reads as TOML but not as the key's type is given as the
    /// string it was (CONDUIT_DEFAULT_ROOM_VERSION=10); one that fits neither is kept for the real parse to report
    /// with the key's name: an unknown key never fails to read, so a failure means the key is ours.
    /// </summary>
    static bool IsConfigKey(string[] keyPath, string raw, out object value)
    {
        value = ParseValue(raw);
        if (keyPath.Any(string.IsNullOrEmpty)) return false;
        if (Probe(keyPath, value) is { } known) return known;
        if (value is not string && Probe(keyPath, raw) is not null) value = raw;
        return true;
    }

    // True: a known key with a value of its type; false: an unknown key; null: a known key, a value it cannot take.
    static bool? Probe(string[] keyPath, object value)
    {
        var probe = new TomlTable();
        Set(probe, keyPath, value);
        try
        {
            var file = TomlSerializer.Deserialize(TomlSerializer.Serialize(probe, ConfigTomlContext.Default.TomlTable), ConfigTomlContext.Default.ConfigFile);
            return file is null || !UnknownKeys(file).Any();
        }
        catch (TomlException)
        {
            return null;
        }
    }

    // Every table that keeps unknown keys (a [TomlExtensionData] dictionary), with its dotted prefix.
    static IEnumerable<string> UnknownKeys(ConfigFile file)
    {
        (Dictionary<string, object?>? Extra, string Prefix)[] tables =
        [
            (file.Unknown, ""),
            (file.Global.Unknown, "global."),
            (file.Global.WellKnown.Unknown, "global.well_known."),
            (file.Global.Tls?.Unknown, "global.tls."),
            (file.Global.Backup.Unknown, "global.backup."),
            (file.Global.Services.Unknown, "global.services."),
            (file.Global.Metrics.Unknown, "global.metrics."),
            (file.Global.RateLimits.Unknown, "global.rate_limits."),
            (file.Global.RateLimits.Login.Unknown, "global.rate_limits.login."),
            (file.Global.RateLimits.Joins.Unknown, "global.rate_limits.joins."),
            (file.Global.RateLimits.Invites.Unknown, "global.rate_limits.invites."),
            .. file.Global.RateLimits.Each().Select(e => (e.Limit.Unknown, $"global.rate_limits.{e.Key}.")),
        ];
        foreach (var (extra, prefix) in tables)
            if (extra is not null)
                foreach (var k in extra.Keys) yield return prefix + k;
    }

    static ConfigFile Deserialize(string text, string source)
    {
        try
        {
            return TomlSerializer.Deserialize(text, ConfigTomlContext.Default.ConfigFile) ?? new ConfigFile();
        }
        catch (TomlException e)
        {
            throw new ConfigException(Describe(e, text, source));
        }
    }

    /// <summary>One clear line: file, line, the key there, and the innermost reason Tomlyn gives.</summary>
    static string Describe(TomlException e, string text, string source)
    {
        var line = e.Line ?? 0;
        var reason = e.Message;
        var positions = System.Text.RegularExpressions.Regex.Matches(e.Message, @"\((\d+),(\d+)\)\s*:\s*error\s*:\s*");
        if (positions.Count > 0)
        {
            var last = positions[^1];
            line = int.Parse(last.Groups[1].Value);
            reason = e.Message[(last.Index + last.Length)..].Trim();
        }
        var key = KeyAt(text, line);
        return key is null ? $"{source}, line {line}: {reason}" : $"{source}, line {line}, key '{key}': {reason}";
    }

    // The dotted key a line sets, with the [table] it is in: "global.port".
    static string? KeyAt(string text, int line)
    {
        var lines = text.Split('\n');
        if (line < 1 || line > lines.Length) return null;
        string? table = null;
        for (var i = 0; i < line - 1; i++)
        {
            var t = lines[i].Trim();
            if (t.StartsWith('[') && t.EndsWith(']')) table = t.Trim('[', ']', ' ');
        }
        var here = lines[line - 1].Trim();
        if (here.StartsWith('[')) return here.TrimEnd('\r');
        var eq = here.IndexOf('=');
        if (eq <= 0) return table;
        var key = here[..eq].Trim();
        return table is null ? key : $"{table}.{key}";
    }

    static void Validate(GlobalConfig g, string source)
    {
        if (string.IsNullOrWhiteSpace(g.ServerName) || g.ServerName.Any(char.IsWhiteSpace))
            throw new ConfigException($"{source}: key 'global.server_name' must be a server name such as example.org");
        if (g.DatabaseBackend is not ("rocksdb" or "sqlite"))
            throw new ConfigException($"{source}: key 'global.database_backend' must be \"rocksdb\" or \"sqlite\", not \"{g.DatabaseBackend}\"");
        if (!System.Net.IPAddress.TryParse(g.Address, out _))
            throw new ConfigException($"{source}: key 'global.address' must be an IP address such as 127.0.0.1 or 0.0.0.0, not \"{g.Address}\"");
        // 0: the system picks a free port when the server starts; the startup summary says which.
        if (g.Port is < 0 or > 65535)
            throw new ConfigException($"{source}: key 'global.port' must be between 0 and 65535 (0: any free port)");
        if (g.Backup.Keep < 0)
            throw new ConfigException($"{source}: key 'global.backup.keep' must be 0 (keep all) or more, not {g.Backup.Keep}");
        if (g.LogFormat is not ("text" or "json"))
            throw new ConfigException($"{source}: key 'global.log_format' must be \"text\" or \"json\", not \"{g.LogFormat}\"");
        if (g.Metrics.Enabled)
        {
            if (!System.Net.IPAddress.TryParse(g.Metrics.Address, out _))
                throw new ConfigException($"{source}: key 'global.metrics.address' must be an IP address such as 127.0.0.1, not \"{g.Metrics.Address}\"");
            if (g.Metrics.Port is < 0 or > 65535)
                throw new ConfigException($"{source}: key 'global.metrics.port' must be between 0 and 65535 (0: any free port)");
        }
        if (g.CacheCapacity < Storage.StoreOptions.MinCacheCapacity)
            throw new ConfigException($"{source}: key 'global.cache_capacity' is in bytes and must be at least {Storage.StoreOptions.MinCacheCapacity} (1 MiB), e.g. 1073741824 for 1 GiB; not {g.CacheCapacity}");
        if (g.MaxRequestSize <= 0)
            throw new ConfigException($"{source}: key 'global.max_request_size' must be positive");
        if (g.MaxConcurrentRequests <= 0)
            throw new ConfigException($"{source}: key 'global.max_concurrent_requests' must be positive");
        if (RoomVersion.Find(g.DefaultRoomVersion) is null)
            throw new ConfigException($"{source}: key 'global.default_room_version' names an unsupported room version \"{g.DefaultRoomVersion}\"");
        (string Key, List<string> Entries)[] ranges =
            [("trusted_proxies", g.TrustedProxies), ("url_preview_ip_range_denylist", g.UrlPreviewIpRangeDenylist), ("url_preview_ip_range_allowlist", g.UrlPreviewIpRangeAllowlist),
             ("ip_range_denylist", g.IpRangeDenylist), ("ip_range_allowlist", g.IpRangeAllowlist)];
        foreach (var (key, entries) in ranges)
            foreach (var p in entries)
                if (!TrustedProxies.TryParseEntry(p, out _))
                    throw new ConfigException($"{source}: key 'global.{key}' has \"{p}\", which is neither an IP address nor a CIDR range such as 10.0.0.0/8");
        if (g.UrlPreviewMaxSpiderSize <= 0)
            throw new ConfigException($"{source}: key 'global.url_preview_max_spider_size' must be positive");
        if (g.WellKnown.SupportMxid is { } mxid && !Ids.IsUserId(mxid))
            throw new ConfigException($"{source}: key 'global.well_known.support_mxid' must be a user ID such as @admin:example.org");
        if (g.RefreshableAccessTokenLifetimeMs <= 0)
            throw new ConfigException($"{source}: key 'global.refreshable_access_token_lifetime_ms' must be positive (milliseconds, e.g. 300000 for 5 minutes)");
        foreach (var admin in g.Admins)
            if (!Ids.IsUserId(admin) || Ids.ServerOf(admin) != g.ServerName)
                throw new ConfigException($"{source}: key 'global.admins' has \"{admin}\", which is not a user ID on this server such as @admin:{g.ServerName}");
        if (g.MaxImagePixels <= 0)
            throw new ConfigException($"{source}: key 'global.max_image_pixels' must be positive");
        if (g.MaxPendingMediaUploads <= 0)
            throw new ConfigException($"{source}: key 'global.max_pending_media_uploads' must be positive");
        if (g.MediaUnusedExpirationSecs <= 0)
            throw new ConfigException($"{source}: key 'global.media_unused_expiration_secs' must be positive");
        if (g.MediaRetentionDays < 0)
            throw new ConfigException($"{source}: key 'global.media_retention_days' must be 0 (off) or a number of days");
        if (g.MediaRetentionLocalDays < 0)
            throw new ConfigException($"{source}: key 'global.media_retention_local_days' must be 0 (off) or a number of days");
        foreach (var (key, limit) in g.RateLimits.Each())
        {
            if (limit.PerSecond is { } ps && !(ps > 0 && double.IsFinite(ps)))
                throw new ConfigException($"{source}: key 'global.rate_limits.{key}.per_second' must be a positive number");
            if (limit.BurstCount is { } bc && !(bc >= 1 && double.IsFinite(bc)))
                throw new ConfigException($"{source}: key 'global.rate_limits.{key}.burst_count' must be at least 1");
        }
    }

    static List<(string Variable, string[] Path, string Value)> EnvOverrides(IDictionary? env)
    {
        var list = new List<(string, string[], string)>();
        if (env is null) return list;
        foreach (DictionaryEntry e in env)
        {
            if (e.Key is not string k || !k.StartsWith("CONDUIT_", StringComparison.Ordinal) || k == "CONDUIT_CONFIG") continue;
            if (e.Value is not string v) continue;
            var path = k["CONDUIT_".Length..].ToLowerInvariant().Split("__");
            list.Add((k, path, v));
        }
        // Environment order is arbitrary; a stable order keeps the startup summary stable.
        list.Sort((a, b) => string.CompareOrdinal(a.Item1, b.Item1));
        return list;
    }

    /// <summary>An override is read as a TOML value when it is one (8448, true, ["a","b"]), else as a string.</summary>
    static object ParseValue(string v)
    {
        try
        {
            var t = TomlSerializer.Deserialize("v = " + v, ConfigTomlContext.Default.TomlTable);
            if (t is not null && t.TryGetValue("v", out var parsed) && parsed is not null) return parsed;
        }
        catch (TomlException) { }
        return v;
    }
}

/// <summary>The effective configuration as TOML, for a server admin to read (<c>!admin server show-config</c>).</summary>
public static class ConfigDisplay
{
    /// <summary>Keys whose values are never shown: anything that is, or names, a secret.</summary>
    static bool IsSecret(string key) => key.Contains("secret", StringComparison.OrdinalIgnoreCase)
        || key.Contains("token", StringComparison.OrdinalIgnoreCase) || key.Contains("password", StringComparison.OrdinalIgnoreCase)
        || key.Contains("private_key", StringComparison.OrdinalIgnoreCase);

    /// <summary>[global] as the process runs with it (file, defaults and environment overrides), secrets replaced by "(hidden)".</summary>
    public static string Redacted(GlobalConfig config)
    {
        var text = TomlSerializer.Serialize(new ConfigFile { Global = config }, ConfigTomlContext.Default.ConfigFile);
        var model = TomlSerializer.Deserialize(text, ConfigTomlContext.Default.TomlTable) ?? new TomlTable();
        Hide(model);
        return TomlSerializer.Serialize(model, ConfigTomlContext.Default.TomlTable);
    }

    static void Hide(TomlTable table)
    {
        foreach (var key in table.Keys.ToList())
            switch (table[key])
            {
                case TomlTable t: Hide(t); break;
                case TomlTableArray a: foreach (var t in a) Hide(t); break;
                // Strings only: a boolean such as registration_requires_token says nothing secret.
                case string when IsSecret(key): table[key] = "(hidden)"; break;
            }
    }
}
