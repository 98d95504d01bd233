using System.Collections;
using Conduit.Common.Events;
using Tomlyn;
using Tomlyn.Model;

namespace Conduit.Common.Config;

/// <summary>A config that cannot be used; the message names the file, line and key.</summary>
public sealed class ConfigException(string message) : Exception(message);

public sealed record LoadedConfig(GlobalConfig Global, string Source, IReadOnlyList<string> Warnings);

/// <summary>
/// Reads conduit.toml from CONDUIT_CONFIG (or the embedded default when unset or empty, as Conduit's
/// container images do), then applies CONDUIT_&lt;KEY&gt; environment overrides to [global]
/// (CONDUIT_PORT=8448; nested tables with "__": CONDUIT_WELL_KNOWN__CLIENT, CONDUIT_SERVICES__ROOMS).
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

    public static LoadedConfig Load(IDictionary? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariables();
        var path = environment["CONDUIT_CONFIG"] as string;
        string text, source;
        if (string.IsNullOrWhiteSpace(path))
        {
            text = EmbeddedDefault;
            source = "(embedded default config)";
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
        var overrides = EnvOverrides(environment);
        if (overrides.Count > 0)
        {
            var model = TomlSerializer.Deserialize(text, ConfigTomlContext.Default.TomlTable) ?? new TomlTable();
            if (!model.TryGetValue("global", out var g) || g is not TomlTable global)
                model["global"] = global = new TomlTable();
            foreach (var (keyPath, value) in overrides)
            {
                var table = global;
                for (var i = 0; i < keyPath.Length - 1; i++)
                {
                    if (!table.TryGetValue(keyPath[i], out var sub) || sub is not TomlTable st)
                        table[keyPath[i]] = st = new TomlTable();
                    table = st;
                }
                table[keyPath[^1]] = value;
            }
            file = Deserialize(TomlSerializer.Serialize(model, ConfigTomlContext.Default.TomlTable), source + " with CONDUIT_* environment overrides");
        }
        var warnings = new List<string>();
        Unknown(file.Unknown, "", warnings, source);
        Unknown(file.Global.Unknown, "global.", warnings, source);
        Unknown(file.Global.WellKnown.Unknown, "global.well_known.", warnings, source);
        Unknown(file.Global.Tls?.Unknown, "global.tls.", warnings, source);
        Unknown(file.Global.Services.Unknown, "global.services.", warnings, source);
        Validate(file.Global, source);
        return new LoadedConfig(file.Global, source, warnings);
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

    static void Unknown(Dictionary<string, object?>? extra, string prefix, List<string> warnings, string source)
    {
        if (extra is null) return;
        foreach (var k in extra.Keys)
            warnings.Add($"{source}: unknown config key '{prefix}{k}' is ignored");
    }

    static void Validate(GlobalConfig g, string source)
    {
        if (string.IsNullOrWhiteSpace(g.ServerName) || g.ServerName.Any(char.IsWhiteSpace))
            throw new ConfigException($"{source}: key 'global.server_name' must be a server name such as example.org");
        if (g.DatabaseBackend is not ("rocksdb" or "sqlite"))
            throw new ConfigException($"{source}: key 'global.database_backend' must be \"rocksdb\" or \"sqlite\", not \"{g.DatabaseBackend}\"");
        if (g.CacheCapacity < Storage.StoreOptions.MinCacheCapacity)
            throw new ConfigException($"{source}: key 'global.cache_capacity' is in bytes and must be at least {Storage.StoreOptions.MinCacheCapacity} (1 MiB), e.g. 1073741824 for 1 GiB; not {g.CacheCapacity}");
        if (g.Port is <= 0 or > 65535)
            throw new ConfigException($"{source}: key 'global.port' must be between 1 and 65535");
        if (g.MaxRequestSize <= 0)
            throw new ConfigException($"{source}: key 'global.max_request_size' must be positive");
        if (g.MaxConcurrentRequests <= 0)
            throw new ConfigException($"{source}: key 'global.max_concurrent_requests' must be positive");
        if (RoomVersion.Find(g.DefaultRoomVersion) is null)
            throw new ConfigException($"{source}: key 'global.default_room_version' names an unsupported room version \"{g.DefaultRoomVersion}\"");
    }

    static List<(string[] Path, object Value)> EnvOverrides(IDictionary? env)
    {
        var list = new List<(string[], object)>();
        if (env is null) return list;
        foreach (DictionaryEntry e in env)
        {
            if (e.Key is not string k || !k.StartsWith("CONDUIT_", StringComparison.Ordinal) || k == "CONDUIT_CONFIG") continue;
            if (e.Value is not string v) continue;
            var path = k["CONDUIT_".Length..].ToLowerInvariant().Split("__");
            list.Add((path, ParseValue(v)));
        }
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
