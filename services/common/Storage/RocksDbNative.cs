using System.Runtime.InteropServices;

namespace Conduit.Common.Storage;

/// <summary>
/// The part of RocksDB's C API (rocksdb/c.h) this project uses, bound with source-generated [LibraryImport] so it
/// works under Native AOT (the RocksDbSharp wrapper binds through Reflection.Emit, which AOT cannot run). The
/// native library itself comes from the RocksDB NuGet package (runtimes/*/native/librocksdb.so).
/// Every function here is a direct, documented C entry point; handles are raw pointers owned by the caller.
/// </summary>
internal static unsafe partial class RocksDbNative
{
    const string Lib = "rocksdb";

    // ---- options
    [LibraryImport(Lib)] internal static partial nint rocksdb_options_create();
    [LibraryImport(Lib)] internal static partial void rocksdb_options_destroy(nint options);
    [LibraryImport(Lib)] internal static partial void rocksdb_options_set_create_if_missing(nint options, byte value);
    [LibraryImport(Lib)] internal static partial void rocksdb_options_set_db_write_buffer_size(nint options, nuint size);
    /// <summary>Only the tests use it, to write a database in the layout of earlier versions (a column family per family).</summary>
    [LibraryImport(Lib)] internal static partial void rocksdb_options_set_create_missing_column_families(nint options, byte value);
    [LibraryImport(Lib)] internal static partial void rocksdb_options_set_max_open_files(nint options, int n);
    [LibraryImport(Lib)] internal static partial void rocksdb_options_set_keep_log_file_num(nint options, nuint n);
    [LibraryImport(Lib)] internal static partial void rocksdb_options_set_write_buffer_size(nint options, nuint size);
    [LibraryImport(Lib)] internal static partial void rocksdb_options_set_arena_block_size(nint options, nuint size);
    [LibraryImport(Lib)] internal static partial void rocksdb_options_set_max_write_buffer_number(nint options, int n);
    [LibraryImport(Lib)] internal static partial void rocksdb_options_set_max_total_wal_size(nint options, ulong size);
    [LibraryImport(Lib)] internal static partial void rocksdb_options_set_write_buffer_manager(nint options, nint manager);
    [LibraryImport(Lib)] internal static partial void rocksdb_options_set_block_based_table_factory(nint options, nint tableOptions);
    [LibraryImport(Lib)] internal static partial nint rocksdb_block_based_options_create();
    [LibraryImport(Lib)] internal static partial void rocksdb_block_based_options_destroy(nint tableOptions);
    [LibraryImport(Lib)] internal static partial void rocksdb_block_based_options_set_block_cache(nint tableOptions, nint cache);
    [LibraryImport(Lib)] internal static partial void rocksdb_block_based_options_set_cache_index_and_filter_blocks(nint tableOptions, byte value);
    [LibraryImport(Lib)] internal static partial void rocksdb_block_based_options_set_pin_l0_filter_and_index_blocks_in_cache(nint tableOptions, byte value);
    /// <summary>Takes ownership of the policy.</summary>
    [LibraryImport(Lib)] internal static partial void rocksdb_block_based_options_set_filter_policy(nint tableOptions, nint policy);
    [LibraryImport(Lib)] internal static partial nint rocksdb_filterpolicy_create_bloom_full(double bitsPerKey);
    /// <summary>Takes ownership of the transform.</summary>
    [LibraryImport(Lib)] internal static partial void rocksdb_options_set_prefix_extractor(nint options, nint sliceTransform);
    [LibraryImport(Lib)] internal static partial nint rocksdb_slicetransform_create_fixed_prefix(nuint length);

    // ---- block cache and write buffer manager
    [LibraryImport(Lib)] internal static partial nint rocksdb_cache_create_lru(nuint capacity);
    [LibraryImport(Lib)] internal static partial void rocksdb_cache_destroy(nint cache);
    [LibraryImport(Lib)] internal static partial nuint rocksdb_cache_get_capacity(nint cache);
    [LibraryImport(Lib)] internal static partial nuint rocksdb_cache_get_usage(nint cache);
    /// <summary>C signature: (size_t buffer_size, rocksdb_cache_t* cache, bool allow_stall).</summary>
    [LibraryImport(Lib)] internal static partial nint rocksdb_write_buffer_manager_create_with_cache(nuint bufferSize, nint cache, [MarshalAs(UnmanagedType.U1)] bool allowStall);
    [LibraryImport(Lib)] internal static partial void rocksdb_write_buffer_manager_destroy(nint manager);
    [LibraryImport(Lib)] internal static partial nuint rocksdb_write_buffer_manager_buffer_size(nint manager);
    [LibraryImport(Lib)] internal static partial nuint rocksdb_write_buffer_manager_memory_usage(nint manager);
    [LibraryImport(Lib)] internal static partial nint rocksdb_writeoptions_create();
    [LibraryImport(Lib)] internal static partial void rocksdb_writeoptions_set_sync(nint options, byte value);
    [LibraryImport(Lib)] internal static partial void rocksdb_writeoptions_destroy(nint options);
    [LibraryImport(Lib)] internal static partial nint rocksdb_readoptions_create();
    [LibraryImport(Lib)] internal static partial void rocksdb_readoptions_destroy(nint options);
    [LibraryImport(Lib)] internal static partial void rocksdb_readoptions_set_snapshot(nint options, nint snapshot);
    [LibraryImport(Lib)] internal static partial void rocksdb_readoptions_set_auto_prefix_mode(nint options, byte value);
    [LibraryImport(Lib)] internal static partial void rocksdb_readoptions_set_total_order_seek(nint options, byte value);
    [LibraryImport(Lib)] internal static partial void rocksdb_readoptions_set_iterate_lower_bound(nint options, byte* key, nuint keyLen);
    [LibraryImport(Lib)] internal static partial void rocksdb_readoptions_set_iterate_upper_bound(nint options, byte* key, nuint keyLen);

    // ---- database
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial nint rocksdb_list_column_families(nint options, string name, out nuint count, out nint err);
    [LibraryImport(Lib)] internal static partial void rocksdb_list_column_families_destroy(nint list, nuint count);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial nint rocksdb_open_column_families(nint options, string name, int count, nint* names, nint* familyOptions, nint* handles, out nint err);
    [LibraryImport(Lib)] internal static partial void rocksdb_close(nint db);
    [LibraryImport(Lib)] internal static partial nint rocksdb_checkpoint_object_create(nint db, out nint err);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial void rocksdb_checkpoint_create(nint checkpoint, string dir, ulong logSizeForFlush, out nint err);
    [LibraryImport(Lib)] internal static partial void rocksdb_checkpoint_object_destroy(nint checkpoint);
    [LibraryImport(Lib)] internal static partial void rocksdb_column_family_handle_destroy(nint handle);
    [LibraryImport(Lib)] internal static partial void rocksdb_drop_column_family(nint db, nint handle, out nint err);
    [LibraryImport(Lib)] internal static partial void rocksdb_free(nint ptr);
    /// <summary>An integer DB property ("rocksdb.block-cache-usage", ...); 0 when it exists, -1 otherwise.</summary>
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int rocksdb_property_int(nint db, string name, out ulong value);
    /// <summary>The same, of one column family (per-family properties such as "rocksdb.estimate-table-readers-mem").</summary>
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int rocksdb_property_int_cf(nint db, nint cf, string name, out ulong value);

    [LibraryImport(Lib)] internal static partial nint rocksdb_get_cf(nint db, nint readOptions, nint cf, byte* key, nuint keyLen, out nuint valueLen, out nint err);
    [LibraryImport(Lib)] internal static partial void rocksdb_put_cf(nint db, nint writeOptions, nint cf, byte* key, nuint keyLen, byte* value, nuint valueLen, out nint err);
    [LibraryImport(Lib)] internal static partial void rocksdb_delete_cf(nint db, nint writeOptions, nint cf, byte* key, nuint keyLen, out nint err);
    [LibraryImport(Lib)] internal static partial void rocksdb_write(nint db, nint writeOptions, nint batch, out nint err);

    [LibraryImport(Lib)] internal static partial nint rocksdb_writebatch_create();
    [LibraryImport(Lib)] internal static partial void rocksdb_writebatch_destroy(nint batch);
    [LibraryImport(Lib)] internal static partial void rocksdb_writebatch_clear(nint batch);
    [LibraryImport(Lib)] internal static partial void rocksdb_writebatch_put_cf(nint batch, nint cf, byte* key, nuint keyLen, byte* value, nuint valueLen);
    [LibraryImport(Lib)] internal static partial void rocksdb_writebatch_delete_cf(nint batch, nint cf, byte* key, nuint keyLen);
    [LibraryImport(Lib)] internal static partial void rocksdb_writebatch_delete_range_cf(nint batch, nint cf, byte* startKey, nuint startLen, byte* endKey, nuint endLen);

    [LibraryImport(Lib)] internal static partial nint rocksdb_create_snapshot(nint db);
    [LibraryImport(Lib)] internal static partial void rocksdb_release_snapshot(nint db, nint snapshot);

    // ---- iterators
    [LibraryImport(Lib)] internal static partial nint rocksdb_create_iterator_cf(nint db, nint readOptions, nint cf);
    [LibraryImport(Lib)] internal static partial void rocksdb_iter_destroy(nint it);
    [LibraryImport(Lib)] internal static partial byte rocksdb_iter_valid(nint it);
    [LibraryImport(Lib)] internal static partial void rocksdb_iter_seek(nint it, byte* key, nuint keyLen);
    [LibraryImport(Lib)] internal static partial void rocksdb_iter_seek_for_prev(nint it, byte* key, nuint keyLen);
    [LibraryImport(Lib)] internal static partial void rocksdb_iter_next(nint it);
    [LibraryImport(Lib)] internal static partial void rocksdb_iter_prev(nint it);
    [LibraryImport(Lib)] internal static partial byte* rocksdb_iter_key(nint it, out nuint keyLen);
    [LibraryImport(Lib)] internal static partial byte* rocksdb_iter_value(nint it, out nuint valueLen);
    [LibraryImport(Lib)] internal static partial void rocksdb_iter_get_error(nint it, out nint err);

    /// <summary>Turns a C API error string into an exception (and frees it).</summary>
    internal static void Check(nint err)
    {
        if (err == 0) return;
        var message = Marshal.PtrToStringUTF8(err) ?? "unknown RocksDB error";
        rocksdb_free(err);
        throw new IOException("RocksDB: " + message);
    }
}
