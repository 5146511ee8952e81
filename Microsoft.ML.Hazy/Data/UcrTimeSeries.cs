using System.Globalization;

namespace Microsoft.ML.Hazy.Data;

/// <summary>
/// Reads time-series classification data in sktime's <c>.ts</c> format, the format of the UCR/UEA archive
/// (Dau et al., "The UCR Time Series Archive", 2019): univariate or multivariate, equal or variable length.
/// </summary>
/// <remarks>
/// A file is a header of <c>#</c> comments and <c>@</c> tags (<c>@problemName</c>, <c>@univariate</c>,
/// <c>@dimensions</c>, <c>@equalLength</c>, <c>@seriesLength</c>, <c>@classLabel true</c> followed by the labels,
/// then <c>@data</c>), then one case per line: channels separated by <c>:</c>, values by <c>,</c>, the class
/// label last. A missing value <c>?</c> reads as NaN; a value written as NaN or infinity, or beyond the range of
/// <see cref="float"/>, is an error. Time stamps and regression targets are not supported.
/// </remarks>
public static class UcrTimeSeries
{
    /// <summary>Loads a <c>.ts</c> file.</summary>
    /// <param name="path">The file.</param>
    /// <returns>The cases of the file.</returns>
    /// <exception cref="InvalidDataException">The header or a case is malformed; the message names the file and line.</exception>
    public static UcrDataSet Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        using var reader = new StreamReader(path);
        return Load(reader, path);
    }

    /// <summary>Loads <c>.ts</c> text from a reader.</summary>
    /// <param name="reader">The text.</param>
    /// <param name="sourceName">The name error messages give the text, usually its file name.</param>
    /// <returns>The cases of the text.</returns>
    /// <exception cref="InvalidDataException">The header or a case is malformed; the message names the source and line.</exception>
    public static UcrDataSet Load(TextReader reader, string sourceName)
    {
        ArgumentNullException.ThrowIfNull(reader);
        ArgumentNullException.ThrowIfNull(sourceName);
        return new Parser(sourceName).Parse(reader);
    }

    /// <summary>Loads the <c>NAME_TRAIN.ts</c> and <c>NAME_TEST.ts</c> files of one problem.</summary>
    /// <param name="directory">The folder holding the two files, or holding a folder <paramref name="name"/> that holds them.</param>
    /// <param name="name">The problem name, for example <c>GunPoint</c>.</param>
    /// <returns>The training and test sets.</returns>
    /// <exception cref="InvalidDataException">A file is malformed, or the two disagree on class labels or channels.</exception>
    public static (UcrDataSet Train, UcrDataSet Test) LoadPair(string directory, string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        ArgumentException.ThrowIfNullOrEmpty(name);
        var folder = File.Exists(Path.Combine(directory, $"{name}_TRAIN.ts")) ? directory : Path.Combine(directory, name);
        var trainPath = Path.Combine(folder, $"{name}_TRAIN.ts");
        var testPath = Path.Combine(folder, $"{name}_TEST.ts");
        var train = Load(trainPath);
        var test = Load(testPath);
        if (!train.ClassLabels.SequenceEqual(test.ClassLabels))
        {
            throw new InvalidDataException(
                $"'{trainPath}' declares class labels [{string.Join(", ", train.ClassLabels)}] but '{testPath}' declares [{string.Join(", ", test.ClassLabels)}]; "
                + "they must be equal, in the same order, for the keys to agree.");
        }

        if (train.ChannelCount != test.ChannelCount)
        {
            throw new InvalidDataException($"'{trainPath}' has {train.ChannelCount} channels but '{testPath}' has {test.ChannelCount}.");
        }

        return (train, test);
    }

    private sealed class Parser
    {
        private readonly string _source;
        private int _lineNumber;
        private string? _name;
        private bool? _univariate;
        private int? _dimensions;
        private bool? _equalLength;
        private int? _seriesLength;
        private string[]? _classLabels;
        private Dictionary<string, int>? _labelIndex;
        private int _channels;

        public Parser(string source) => _source = source;

        public UcrDataSet Parse(TextReader reader)
        {
            var series = new List<float[]>();
            var lengths = new List<int>();
            var labels = new List<int>();
            bool inData = false;
            string? line;
            while ((line = reader.ReadLine()) is not null)
            {
                _lineNumber++;
                var text = line.AsSpan().Trim();
                if (text.IsEmpty || (!inData && text[0] == '#'))
                {
                    continue;
                }

                if (!inData)
                {
                    inData = ParseHeaderLine(text);
                    continue;
                }

                var (values, length, label) = ParseCase(text);
                if (lengths.Count > 0 && ExpectEqualLength && length != lengths[0])
                {
                    throw Error($"the case has {length} time steps but the first case has {lengths[0]}, and the series are declared of equal length.");
                }

                series.Add(values);
                lengths.Add(length);
                labels.Add(label);
            }

            if (!inData)
            {
                throw new InvalidDataException($"{_source}: no @data line; the header must end with @data before the cases.");
            }

            if (series.Count == 0)
            {
                throw new InvalidDataException($"{_source}: no cases after @data.");
            }

            bool isEqualLength = _equalLength ?? lengths.All(l => l == lengths[0]);
            var name = _name ?? Path.GetFileNameWithoutExtension(_source);
            return new UcrDataSet(name, _channels, isEqualLength, _classLabels!, series.ToArray(), lengths.ToArray(), labels.ToArray());
        }

        private bool ExpectEqualLength => _equalLength ?? _seriesLength.HasValue;

        /// <summary>Reads one header tag; returns true at <c>@data</c>.</summary>
        private bool ParseHeaderLine(ReadOnlySpan<char> text)
        {
            if (text[0] != '@')
            {
                throw Error("expected a header tag starting with '@' or a comment starting with '#' before @data.");
            }

            var parts = text.ToString().Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            switch (parts[0].ToLowerInvariant())
            {
                case "@problemname":
                    _name = parts.Length > 1 ? string.Join(' ', parts.Skip(1)) : null;
                    break;
                case "@timestamps":
                    if (ParseBool(parts))
                    {
                        throw Error("time-stamped series (@timeStamps true) are not supported.");
                    }

                    break;
                case "@univariate":
                    _univariate = ParseBool(parts);
                    break;
                case "@dimension":
                case "@dimensions":
                    _dimensions = ParsePositive(parts);
                    break;
                case "@equallength":
                    _equalLength = ParseBool(parts);
                    break;
                case "@serieslength":
                    _seriesLength = ParsePositive(parts);
                    break;
                case "@targetlabel":
                    if (ParseBool(parts))
                    {
                        throw Error("regression targets (@targetLabel true) are not supported; only class labels are.");
                    }

                    break;
                case "@classlabel":
                    ParseClassLabels(parts);
                    break;
                case "@data":
                    FinishHeader();
                    return true;
            }

            // Other tags (@missing, and any a later sktime adds) do not change how cases are read.
            return false;
        }

        private void ParseClassLabels(string[] parts)
        {
            if (!ParseBool(parts))
            {
                throw Error("the file has no class labels (@classLabel false); only classification data is supported.");
            }

            if (parts.Length < 3)
            {
                throw Error("@classLabel true must be followed by the class labels.");
            }

            _classLabels = parts[2..];
            _labelIndex = new Dictionary<string, int>(StringComparer.Ordinal);
            for (int i = 0; i < _classLabels.Length; i++)
            {
                if (!_labelIndex.TryAdd(_classLabels[i], i))
                {
                    throw Error($"the class label '{_classLabels[i]}' is declared twice.");
                }
            }
        }

        private void FinishHeader()
        {
            if (_classLabels is null)
            {
                throw Error("@data comes before @classLabel; the class labels must be declared in the header.");
            }

            if (_univariate == true && _dimensions is int d && d != 1)
            {
                throw Error($"the header declares @univariate true but @dimensions {d}.");
            }

            // Zero means "take the count from the first case" when the header does not say.
            _channels = _dimensions ?? (_univariate == true ? 1 : 0);
        }

        private (float[] Values, int Length, int Label) ParseCase(ReadOnlySpan<char> text)
        {
            int labelStart = text.LastIndexOf(':');
            if (labelStart < 0)
            {
                throw Error("expected the series, then ':' and the class label; found no ':'.");
            }

            var labelText = text[(labelStart + 1)..].Trim().ToString();
            if (!_labelIndex!.TryGetValue(labelText, out int label))
            {
                throw Error($"unknown class label '{labelText}'; the header declares [{string.Join(", ", _classLabels!)}].");
            }

            var body = text[..labelStart];
            int channels = body.Count(':') + 1;
            if (_channels == 0)
            {
                _channels = channels;
            }
            else if (channels != _channels)
            {
                throw Error($"the case has {channels} channels but {_channels} were expected.");
            }

            int length = body[..IndexOrEnd(body, ':')].Count(',') + 1;
            if (ExpectEqualLength && _seriesLength is int declared && length != declared)
            {
                throw Error($"the case has {length} time steps but the header declares @seriesLength {declared}.");
            }

            var values = new float[length * channels];
            var rest = body;
            for (int c = 0; c < channels; c++)
            {
                int end = IndexOrEnd(rest, ':');
                var channel = rest[..end];
                rest = end < rest.Length ? rest[(end + 1)..] : default;
                int channelLength = channel.Count(',') + 1;
                if (channelLength != length)
                {
                    throw Error($"channel {c + 1} has {channelLength} values but channel 1 has {length}; the channels of a case must have equal length.");
                }

                // Time-major: step t holds all channels at values[t * channels .. (t + 1) * channels).
                for (int t = 0; t < length; t++)
                {
                    int comma = IndexOrEnd(channel, ',');
                    values[t * channels + c] = ParseValue(channel[..comma].Trim(), c, t);
                    channel = comma < channel.Length ? channel[(comma + 1)..] : default;
                }
            }

            return (values, length, label);
        }

        private float ParseValue(ReadOnlySpan<char> token, int channel, int step)
        {
            if (token is "?")
            {
                return float.NaN;
            }

            if (!float.TryParse(token, NumberStyles.Float, CultureInfo.InvariantCulture, out float value))
            {
                throw Error($"'{token}' at channel {channel + 1}, time step {step + 1} is not a number or '?'.");
            }

            // float.TryParse accepts NaN and infinity in any case, and gives infinity for a value beyond float's range.
            if (!float.IsFinite(value))
            {
                throw Error($"'{token}' at channel {channel + 1}, time step {step + 1} is not a finite number within float's range; only '?' marks a missing value.");
            }

            return value;
        }

        private static int IndexOrEnd(ReadOnlySpan<char> text, char separator)
        {
            int index = text.IndexOf(separator);
            return index < 0 ? text.Length : index;
        }

        private bool ParseBool(string[] parts)
        {
            if (parts.Length < 2 || !bool.TryParse(parts[1], out bool value))
            {
                throw Error($"{parts[0]} must be followed by true or false.");
            }

            return value;
        }

        private int ParsePositive(string[] parts)
        {
            if (parts.Length < 2 || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int value) || value <= 0)
            {
                throw Error($"{parts[0]} must be followed by a positive integer.");
            }

            return value;
        }

        private InvalidDataException Error(string message) => new($"{_source}, line {_lineNumber}: {message}");
    }
}
