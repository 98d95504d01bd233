using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common.Crypto;
using Conduit.Common.Http;

namespace Conduit.Common.Tests;

/// <summary>The strict parser of client JSON: everything unusable is refused at parse time, never later.</summary>
public class RequestJsonTests
{
    static string ErrOf(byte[] body) => Assert.Throws<MatrixException>(() => RequestJson.ParseObject(body)).ErrCode;
    static string ErrOf(string body) => ErrOf(Encoding.UTF8.GetBytes(body));

    [Theory]
    [InlineData("{\"a\":1,\"a\":2}")]
    [InlineData("{\"x\":{\"a\":1,\"a\":1}}")]
    [InlineData("{\"x\":[{\"k\":\"v\",\"k\":\"w\"}]}")]
    [InlineData("{\"a\":\"\\ud800\"}")]
    [InlineData("{\"a\":[\"ok\",\"\\udc00x\"]}")]
    [InlineData("{\"\\ud800\":1}")]
    [InlineData("{\"a\":1,}")]
    [InlineData("{\"a\":1 // comment\n}")]
    [InlineData("{\"a\":")]
    [InlineData("{'a':1}")]
    [InlineData("{\"a\":NaN}")]
    public void Unusable_json_is_not_json(string body) => Assert.Equal("M_NOT_JSON", ErrOf(body));

    [Fact]
    public void Invalid_utf8_is_not_json_in_values_and_keys()
    {
        Assert.Equal("M_NOT_JSON", ErrOf([.. "{\"a\":\""u8, 0xff, 0xfe, .. "\"}"u8]));
        Assert.Equal("M_NOT_JSON", ErrOf([.. "{\""u8, 0xc3, .. "\":1}"u8]));
        // An overlong encoding of '/' and an encoded surrogate are not UTF-8 either.
        Assert.Equal("M_NOT_JSON", ErrOf([.. "{\"a\":\""u8, 0xc0, 0xaf, .. "\"}"u8]));
        Assert.Equal("M_NOT_JSON", ErrOf([.. "{\"a\":\""u8, 0xed, 0xa0, 0x80, .. "\"}"u8]));
    }

    [Fact]
    public void Nesting_is_bounded()
    {
        string Nested(int depth) => "{\"a\":" + new string('[', depth - 1) + new string(']', depth - 1) + "}";
        RequestJson.ParseObject(Encoding.UTF8.GetBytes(Nested(RequestJson.MaxDepth)));
        Assert.Equal("M_NOT_JSON", ErrOf(Nested(RequestJson.MaxDepth + 1)));
    }

    [Theory]
    [InlineData("[1]")]
    [InlineData("\"s\"")]
    [InlineData("null")]
    [InlineData("12")]
    public void A_body_that_is_not_an_object_is_bad_json(string body) => Assert.Equal("M_BAD_JSON", ErrOf(body));

    [Fact]
    public void The_tree_is_whole_and_numbers_keep_their_value()
    {
        var o = RequestJson.ParseObject("{\"s\":\"é😀\\u0000\",\"n\":[1,-9007199254740991,1.5,1e400],\"b\":true,\"z\":null,\"o\":{\"k\":[]}}"u8.ToArray());
        Assert.Equal("é😀\0", o["s"]!.GetValue<string>());
        Assert.True(o["n"]![0].TryGetInteger(out var one) && one == 1);
        Assert.True(o["n"]![1].TryGetInteger(out var min) && min == CanonicalJson.MinSafeInteger);
        // Floats and out-of-range numbers are kept as they were written, for canonical JSON to refuse.
        Assert.False(o["n"]![2].TryGetInteger(out _));
        Assert.Throws<CanonicalJsonException>(() => CanonicalJson.Serialize(o["n"]![2]));
        Assert.Throws<CanonicalJsonException>(() => CanonicalJson.Serialize(o["n"]![3]));
        Assert.True(o.ContainsKey("z") && o["z"] is null);
        Assert.Empty(o["o"]!["k"]!.AsArray());
        // Eager: every node is there already, so later reads cannot fail on the text.
        Assert.Equal("{\"b\":true,\"o\":{\"k\":[]},\"s\":\"é😀\\u0000\",\"z\":null}",
            CanonicalJson.Serialize(new JsonObject { ["b"] = o["b"]!.DeepClone(), ["o"] = o["o"]!.DeepClone(), ["s"] = o["s"]!.DeepClone(), ["z"] = null }));
    }

    [Fact]
    public void Query_parameters_follow_the_same_rules()
    {
        Assert.Equal("M_NOT_JSON", Assert.Throws<MatrixException>(() => RequestJson.ParseObject("{\"a\":1,\"a\":1}", "filter")).ErrCode);
        Assert.Equal("M_BAD_JSON", Assert.Throws<MatrixException>(() => RequestJson.ParseObject("[]", "filter")).ErrCode);
        Assert.Equal(4, RequestJson.ParseObject("{\"limit\":4}", "filter")["limit"]!.GetValue<long>());
    }

    [Fact]
    public void Typed_lists_refuse_entries_of_another_type()
    {
        var o = RequestJson.ParseObject("{\"s\":[\"a\",\"b\"],\"mixed\":[\"a\",1],\"objs\":[{}],\"bad\":[{},2],\"notlist\":\"x\"}"u8.ToArray());
        Assert.Equal(["a", "b"], o.OptStringList("s"));
        Assert.Null(o.OptStringList("absent"));
        Assert.Single(o.OptObjectList("objs")!);
        Assert.Equal("M_BAD_JSON", Assert.Throws<MatrixException>(() => o.OptStringList("mixed")).ErrCode);
        Assert.Equal("M_BAD_JSON", Assert.Throws<MatrixException>(() => o.OptObjectList("bad")).ErrCode);
        Assert.Equal("M_BAD_JSON", Assert.Throws<MatrixException>(() => o.OptStringList("notlist")).ErrCode);
    }
}

/// <summary>Identifier limits are bytes of UTF-8, not UTF-16 characters (appendices, "Identifier Grammar").</summary>
public class IdLimitTests
{
    [Fact]
    public void User_ids_are_limited_to_255_bytes()
    {
        var ascii = "@" + new string('a', 255 - 1 - ":x.org".Length) + ":x.org";
        Assert.Equal(255, ascii.Length);
        Assert.True(Ids.IsUserId(ascii));
        Assert.False(Ids.IsUserId("@a" + ascii[1..]));
        // 130 two-byte characters: 133 UTF-16 chars, 263 bytes.
        var wide = "@" + new string('é', 130) + ":x";
        Assert.True(wide.Length < 255);
        Assert.False(Ids.IsUserId(wide));
        Assert.False(Ids.TrySplit("#" + new string('é', 130) + ":x", '#', out _, out _));
    }

    [Theory]
    [InlineData("$abc", true)]
    [InlineData("$abc:server.org", true)]
    [InlineData("$", false)]
    [InlineData("abc", false)]
    [InlineData("$a b", false)]
    [InlineData("$a\nb", false)]
    [InlineData("", false)]
    public void Event_ids(string id, bool valid) => Assert.Equal(valid, Ids.IsEventId(id));

    [Fact]
    public void Event_ids_are_limited_to_255_bytes()
    {
        Assert.True(Ids.IsEventId("$" + new string('a', 254)));
        Assert.False(Ids.IsEventId("$" + new string('a', 255)));
        Assert.False(Ids.IsEventId("$" + new string('é', 128)));
    }
}
