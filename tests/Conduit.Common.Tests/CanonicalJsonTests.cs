using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common.Crypto;

namespace Conduit.Common.Tests;

public class CanonicalJsonTests
{
    [Theory]
    [InlineData("1.5")]
    [InlineData("-0.25")]
    [InlineData("1e-3")]
    [InlineData("1E400")]
    [InlineData("9007199254740992")]
    [InlineData("-9007199254740992")]
    [InlineData("18446744073709551616")]
    public void Rejects_floats_and_out_of_range_numbers(string number)
    {
        var node = CanonicalJson.Parse("{\"a\":" + number + "}");
        Assert.Throws<CanonicalJsonException>(() => CanonicalJson.Serialize(node));
    }

    [Fact]
    public void Rejects_float_values_built_in_code()
    {
        Assert.Throws<CanonicalJsonException>(() => CanonicalJson.Serialize(new JsonObject { ["a"] = 0.5 }));
        Assert.Throws<CanonicalJsonException>(() => CanonicalJson.Serialize(new JsonArray(1.5m)));
        Assert.Throws<CanonicalJsonException>(() => CanonicalJson.Serialize(JsonValue.Create(double.NaN)));
        Assert.Throws<CanonicalJsonException>(() => CanonicalJson.Serialize(JsonValue.Create(9_007_199_254_740_992L)));
    }

    [Fact]
    public void Accepts_integers_at_the_range_limits()
    {
        Assert.Equal("[9007199254740991,-9007199254740991,0,42]",
            CanonicalJson.Serialize(CanonicalJson.Parse("[9007199254740991,-9007199254740991,-0,42]")));
        Assert.Equal("{\"i\":7,\"l\":-9007199254740991,\"u\":3}",
            CanonicalJson.Serialize(new JsonObject { ["l"] = CanonicalJson.MinSafeInteger, ["u"] = (byte)3, ["i"] = 7 }));
    }

    [Fact]
    public void Orders_keys_by_code_point_not_utf16_unit()
    {
        // U+1F600 is a surrogate pair (D83D DE00) and sorts before U+E000..U+FFFF in UTF-16
        // order, but after them in code point order. Expected value computed with Python's
        // json.dumps(sort_keys=True, ensure_ascii=False).
        var obj = new JsonObject
        {
            ["\u00e9"] = 1, ["z"] = 2, ["\U0001F600"] = 3, ["\uffff"] = 4, ["A"] = 5, ["\u0080"] = 6,
        };
        Assert.Equal("{\"A\":5,\"z\":2,\"\u0080\":6,\"\u00e9\":1,\"\uffff\":4,\"\U0001F600\":3}", CanonicalJson.Serialize(obj));
        Assert.True(CanonicalJson.CodePointComparer.Compare("\uffff", "\U0001F600") < 0);
        Assert.True(string.CompareOrdinal("\uffff", "\U0001F600") > 0);
    }

    [Fact]
    public void Sorts_nested_objects_and_keeps_array_order()
    {
        var node = CanonicalJson.Parse("{ \"b\": [ {\"y\":1,\"x\":2}, 3, \"s\" ], \"a\": { \"d\": true, \"c\": false, \"e\": null } }");
        Assert.Equal("{\"a\":{\"c\":false,\"d\":true,\"e\":null},\"b\":[{\"x\":2,\"y\":1},3,\"s\"]}", CanonicalJson.Serialize(node));
    }

    [Fact]
    public void Escapes_only_what_json_requires()
    {
        string s = "q\" b\\ \b\f\n\r\t \u0000\u0001\u001f\u007f / \u00e9 \u2028 \U0001F600";
        string expected = "\"q\\\" b\\\\ \\b\\f\\n\\r\\t \\u0000\\u0001\\u001f\u007f / \u00e9 \u2028 \U0001F600\"";
        Assert.Equal(expected, CanonicalJson.Serialize(JsonValue.Create(s)));
        Assert.Equal(Encoding.UTF8.GetBytes(expected), CanonicalJson.SerializeToUtf8Bytes(JsonValue.Create(s)));
        // Escaped input is unescaped on output.
        Assert.Equal("\"\u00e9/<>&'\"", CanonicalJson.Serialize(CanonicalJson.Parse("\"\\u00E9\\/\\u003c>&\\u0027\"")));
    }

    [Fact]
    public void Rejects_lone_surrogates()
    {
        Assert.Throws<CanonicalJsonException>(() => CanonicalJson.Serialize(CanonicalJson.Parse("\"\\ud800\"")));
        Assert.Throws<CanonicalJsonException>(() => CanonicalJson.Serialize(new JsonObject { ["\udc00"] = 1 }));
    }

    [Fact]
    public void Parse_rejects_duplicate_keys_and_invalid_json()
    {
        Assert.Throws<CanonicalJsonException>(() => CanonicalJson.Parse("{\"a\":1,\"a\":2}"));
        Assert.Throws<CanonicalJsonException>(() => CanonicalJson.Parse("{\"x\":{\"a\":1,\"a\":1}}"u8));
        Assert.Throws<CanonicalJsonException>(() => CanonicalJson.Parse("{\"a\":1,}"));
        Assert.Throws<CanonicalJsonException>(() => CanonicalJson.Parse("{\"a\":1} // c"));
        Assert.Equal("{\"a\":1}", CanonicalJson.Serialize(CanonicalJson.Parse("{\"a\" : 1}"u8)));
    }

    [Fact]
    public void Excluding_top_level_keys_matches_serializing_a_copy_without_them()
    {
        var obj = CanonicalJson.Parse("{\"unsigned\":{\"x\":1},\"b\":{\"unsigned\":2},\"signatures\":{},\"a\":1}")!.AsObject();
        Assert.Equal("{\"a\":1,\"b\":{\"unsigned\":2}}",
            Encoding.UTF8.GetString(CanonicalJson.SerializeToUtf8BytesExcluding(obj, "signatures", "unsigned")));
        Assert.Equal(4, obj.Count);
    }
}
