using System.Buffers.Binary;
using System.IO.Compression;
using Microsoft.ML.Data;

namespace Microsoft.ML.Hazy.Data;

/// <summary>
/// Reads Fashion-MNIST (Xiao, Rasul and Vollgraf, Zalando Research, 2017): 28×28 grey images of
/// clothing in 10 classes, stored as IDX files, gzip-compressed or raw.
/// </summary>
/// <remarks>
/// <para>
/// The files are read into one byte array; a row's features are converted to floats only when a cursor
/// reads them, so a loaded data set costs one byte per pixel. The returned views can be shuffled.
/// </para>
/// <para>
/// A gzip file is always decompressed to its end, also when only its first rows are read, so that the CRC-32
/// and size in its trailer are checked: a corrupt file fails to load, naming the file.
/// </para>
/// <list type="table">
/// <listheader><term>Output column</term><description>Type and content</description></listheader>
/// <item><term>Label</term><description>Key of UInt32 with 10 values (label + 1), named by <see cref="ClassNames"/> in its <c>KeyValues</c> annotation.</description></item>
/// <item><term>Features</term><description>Vector of 784 Single: the pixels row by row, each divided by 255.</description></item>
/// </list>
/// </remarks>
public static class FashionMnist
{
    /// <summary>The side of an image in pixels.</summary>
    public const int ImageSize = 28;

    private const int PixelCount = ImageSize * ImageSize;
    private const int ImagesMagic = 2051;
    private const int LabelsMagic = 2049;

    private static readonly string[] _classNames =
    [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ];

    // CRC-32 of ISO 3309 / gzip: reflected polynomial 0xEDB88320.
    private static readonly uint[] _crcTable = Enumerable.Range(0, 256).Select(n =>
    {
        uint c = (uint)n;
        for (int k = 0; k < 8; k++)
        {
            c = (c & 1) != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1;
        }

        return c;
    }).ToArray();

    /// <summary>The names of the 10 classes, indexed by the label stored in the files (0-9).</summary>
    public static IReadOnlyList<string> ClassNames { get; } = Array.AsReadOnly(_classNames);

    /// <summary>Loads one split from an IDX image file and an IDX label file.</summary>
    /// <param name="mlContext">The ML.NET context.</param>
    /// <param name="imagesPath">The IDX3 image file (magic number 2051), gzip-compressed or raw.</param>
    /// <param name="labelsPath">The IDX1 label file (magic number 2049), gzip-compressed or raw.</param>
    /// <param name="maxRows">When set, only the first <paramref name="maxRows"/> images are read.</param>
    /// <returns>A data view with columns <c>Label</c> and <c>Features</c>.</returns>
    /// <exception cref="InvalidDataException">A file is not an IDX file of the expected kind, its images are not
    /// 28×28, it is truncated or fails its gzip CRC-32 or size check, a label is outside 0-9, or the two files hold
    /// different numbers of items.</exception>
    public static IDataView Load(MLContext mlContext, string imagesPath, string labelsPath, int? maxRows = null)
        => LoadCore(mlContext, imagesPath, labelsPath, maxRows);

    private static IDataView LoadCore(MLContext mlContext, string imagesPath, string labelsPath, int? maxRows)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        ArgumentException.ThrowIfNullOrEmpty(imagesPath);
        ArgumentException.ThrowIfNullOrEmpty(labelsPath);
        if (maxRows is int max)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(max, nameof(maxRows));
        }

        var (pixels, imageCount) = ReadIdx(imagesPath, ImagesMagic, maxRows);
        var (labels, labelCount) = ReadIdx(labelsPath, LabelsMagic, maxRows);
        if (imageCount != labelCount)
        {
            throw new InvalidDataException(
                $"'{imagesPath}' holds {imageCount} images but '{labelsPath}' holds {labelCount} labels; the counts must match.");
        }

        for (int i = 0; i < labels.Length; i++)
        {
            if (labels[i] >= _classNames.Length)
            {
                throw new InvalidDataException($"'{labelsPath}': the label of item {i} is {labels[i]}; expected 0 to {_classNames.Length - 1}.");
            }
        }

        var (keyType, keyNames) = KeyValueAnnotations.Create(_classNames);
        var builder = new DataViewSchema.Builder();
        builder.AddColumn("Label", keyType, keyNames);
        builder.AddColumn("Features", new VectorDataViewType(NumberDataViewType.Single, PixelCount));

        RowValueGetter<uint> label = (int row, ref uint value) => value = labels[row] + 1u;
        RowValueGetter<VBuffer<float>> features = (int row, ref VBuffer<float> value) =>
        {
            var editor = VBufferEditor.Create(ref value, PixelCount);
            var source = pixels.AsSpan(row * PixelCount, PixelCount);
            var destination = editor.Values;
            for (int i = 0; i < PixelCount; i++)
            {
                destination[i] = source[i] / 255f;
            }

            value = editor.Commit();
        };

        return new RandomAccessDataView(builder.ToSchema(), labels.Length, label, features);
    }

    /// <summary>Reads the items of an IDX file: the item count in its header, and the bytes of the first items.</summary>
    private static (byte[] Items, int Count) ReadIdx(string path, int expectedMagic, int? maxRows)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"The IDX file '{path}' does not exist.", path);
        }

        using var file = File.OpenRead(path);
        // Gzip is recognised by its magic bytes, not the file name, so renamed or unpacked files load alike.
        bool isGzip = file.ReadByte() == 0x1f && file.ReadByte() == 0x8b;
        file.Position = 0;
        using var stream = isGzip ? new GZipStream(file, CompressionMode.Decompress) : (Stream)file;

        bool images = expectedMagic == ImagesMagic;
        var header = new byte[images ? 16 : 8];
        // The magic number is checked before the rest of the header, whose size depends on it.
        ReadExactly(stream, header.AsSpan(0, 8), path, "the header");
        int magic = BinaryPrimitives.ReadInt32BigEndian(header);
        if (magic != expectedMagic)
        {
            throw new InvalidDataException(
                $"'{path}' is not an IDX {(images ? "image" : "label")} file: expected magic number {expectedMagic}, found {magic}.");
        }

        int count = BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(4));
        if (count < 0 || count > int.MaxValue / PixelCount)
        {
            throw new InvalidDataException($"'{path}' declares {count} items; expected 0 to {int.MaxValue / PixelCount}.");
        }

        int itemSize = 1;
        if (images)
        {
            ReadExactly(stream, header.AsSpan(8), path, "the header");
            int rows = BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(8));
            int columns = BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(12));
            if (rows != ImageSize || columns != ImageSize)
            {
                throw new InvalidDataException($"'{path}': expected {ImageSize}×{ImageSize} images, found {rows}×{columns}.");
            }

            itemSize = PixelCount;
        }

        int read = Math.Min(count, maxRows ?? count);
        var items = new byte[read * itemSize];
        ReadExactly(stream, items, path, $"{read} items of {itemSize} bytes");
        if (isGzip)
        {
            // The gzip trailer (CRC-32 and size) is checked only when the stream is read to its end.
            ReadToEnd(stream, path);
        }

        return (items, count);
    }

    private static void ReadToEnd(Stream stream, string path)
    {
        var buffer = new byte[81920];
        try
        {
            while (stream.Read(buffer) > 0)
            {
            }
        }
        catch (InvalidDataException e)
        {
            throw GzipError(path, e);
        }
    }

    private static void ReadExactly(Stream stream, Span<byte> buffer, string path, string what)
    {
        int read;
        try
        {
            read = stream.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false);
        }
        catch (InvalidDataException e)
        {
            throw GzipError(path, e);
        }

        if (read < buffer.Length)
        {
            throw new InvalidDataException($"'{path}' is truncated: expected {buffer.Length} bytes for {what}, found {read}.");
        }
    }

    /// <summary>
    /// Explains a gzip failure. zlib reports a wrong CRC-32 or size in the trailer as a generic data error, so the
    /// deflate data is inflated again without zlib's checks and compared with the trailer at the end of the file.
    /// </summary>
    private static InvalidDataException GzipError(string path, InvalidDataException e)
    {
        var bytes = File.ReadAllBytes(path);
        if (GzipDataOffset(bytes) is int offset && Inflate(bytes.AsSpan(offset, bytes.Length - 8 - offset)) is (uint crc, uint size))
        {
            uint expectedCrc = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(bytes.Length - 8));
            uint expectedSize = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(bytes.Length - 4));
            if (size != expectedSize)
            {
                return new InvalidDataException($"'{path}' is corrupt: it decompresses to {size} bytes, but its gzip trailer says {expectedSize}.", e);
            }

            if (crc != expectedCrc)
            {
                return new InvalidDataException(
                    $"'{path}' is corrupt: the CRC-32 of its decompressed data is 0x{crc:X8}, but its gzip trailer says 0x{expectedCrc:X8}.", e);
            }
        }

        return new InvalidDataException($"'{path}' is not a valid gzip file: {e.Message}", e);
    }

    /// <summary>Where the deflate data of a gzip file starts (RFC 1952 header with its optional fields); null for a malformed header.</summary>
    private static int? GzipDataOffset(byte[] gzip)
    {
        const int FlagHeaderCrc = 2, FlagExtra = 4, FlagName = 8, FlagComment = 16;
        if (gzip.Length < 18)
        {
            return null;
        }

        int flags = gzip[3];
        int offset = 10;
        if ((flags & FlagExtra) != 0)
        {
            offset += 2 + (gzip[offset] | (gzip[offset + 1] << 8));
        }

        foreach (int flag in new[] { FlagName, FlagComment })
        {
            if ((flags & flag) != 0 && offset < gzip.Length)
            {
                int end = Array.IndexOf(gzip, (byte)0, offset);
                offset = end < 0 ? gzip.Length : end + 1;
            }
        }

        if ((flags & FlagHeaderCrc) != 0)
        {
            offset += 2;
        }

        return offset <= gzip.Length - 8 ? offset : null;
    }

    /// <summary>The CRC-32 and size (mod 2^32, as gzip stores it) of raw deflate data; null when it does not inflate.</summary>
    private static (uint Crc, uint Size)? Inflate(ReadOnlySpan<byte> deflateData)
    {
        using var deflate = new DeflateStream(new MemoryStream(deflateData.ToArray()), CompressionMode.Decompress);
        var buffer = new byte[81920];
        uint crc = 0xFFFFFFFF;
        uint size = 0;
        try
        {
            int n;
            while ((n = deflate.Read(buffer)) > 0)
            {
                for (int i = 0; i < n; i++)
                {
                    crc = _crcTable[(crc ^ buffer[i]) & 0xFF] ^ (crc >> 8);
                }

                size += (uint)n;
            }
        }
        catch (InvalidDataException)
        {
            return null;
        }

        return (~crc, size);
    }
}
