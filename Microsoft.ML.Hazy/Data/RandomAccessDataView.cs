using Microsoft.ML.Data;

namespace Microsoft.ML.Hazy.Data;

/// <summary>Writes the value of one column for the row at <paramref name="row"/>.</summary>
internal delegate void RowValueGetter<TValue>(int row, ref TValue value);

/// <summary>
/// A read-only <see cref="IDataView"/> over rows addressable by index. Each column is a
/// <see cref="RowValueGetter{TValue}"/>, called only when a cursor's getter is, so a view over
/// compact storage (bytes, shared arrays) converts one row at a time instead of materialising all rows.
/// Shuffling is a random permutation of the row indices; row ids are the unshuffled indices.
/// </summary>
internal sealed class RandomAccessDataView : IDataView
{
    private readonly Delegate[] _columnGetters;
    private readonly int _rowCount;

    /// <param name="schema">The columns, in the order of <paramref name="columnGetters"/>.</param>
    /// <param name="rowCount">The number of rows.</param>
    /// <param name="columnGetters">One <see cref="RowValueGetter{TValue}"/> per column, of the column's raw type.</param>
    public RandomAccessDataView(DataViewSchema schema, int rowCount, params Delegate[] columnGetters)
    {
        if (schema.Count != columnGetters.Length)
        {
            throw new ArgumentException($"The schema has {schema.Count} columns but {columnGetters.Length} getters were given.", nameof(columnGetters));
        }

        for (int i = 0; i < schema.Count; i++)
        {
            var expected = typeof(RowValueGetter<>).MakeGenericType(schema[i].Type.RawType);
            if (columnGetters[i].GetType() != expected)
            {
                throw new ArgumentException($"The getter of column '{schema[i].Name}' is {columnGetters[i].GetType()}, expected {expected}.", nameof(columnGetters));
            }
        }

        ArgumentOutOfRangeException.ThrowIfNegative(rowCount);
        Schema = schema;
        _rowCount = rowCount;
        _columnGetters = columnGetters;
    }

    public DataViewSchema Schema { get; }

    public bool CanShuffle => true;

    public long? GetRowCount() => _rowCount;

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
    {
        ArgumentNullException.ThrowIfNull(columnsNeeded);
        var active = new bool[Schema.Count];
        foreach (var column in columnsNeeded)
        {
            if (column.Index < 0 || column.Index >= Schema.Count || Schema[column.Index].Name != column.Name)
            {
                throw new ArgumentException($"Column '{column.Name}' is not a column of this data view.", nameof(columnsNeeded));
            }

            active[column.Index] = true;
        }

        return new Cursor(this, active, rand is null ? null : Permutation(_rowCount, rand));
    }

    // One cursor serves every request: the rows are in memory, so parallel cursors would gain little.
    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null)
        => [GetRowCursor(columnsNeeded, rand)];

    private static int[] Permutation(int count, Random rand)
    {
        var order = new int[count];
        for (int i = 0; i < count; i++)
        {
            order[i] = i;
        }

        rand.Shuffle(order);
        return order;
    }

    private sealed class Cursor : DataViewRowCursor
    {
        private readonly RandomAccessDataView _parent;
        private readonly bool[] _active;
        private readonly int[]? _order;
        private long _position = -1;
        private int _row = -1;
        private bool _done;

        public Cursor(RandomAccessDataView parent, bool[] active, int[]? order)
        {
            _parent = parent;
            _active = active;
            _order = order;
        }

        public override DataViewSchema Schema => _parent.Schema;

        public override long Position => _position;

        public override long Batch => 0;

        public override bool MoveNext()
        {
            if (_done)
            {
                return false;
            }

            if (_position + 1 >= _parent._rowCount)
            {
                _done = true;
                _position = -1;
                _row = -1;
                return false;
            }

            _position++;
            _row = _order is null ? (int)_position : _order[_position];
            return true;
        }

        public override bool IsColumnActive(DataViewSchema.Column column) => _active[column.Index];

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            if (column.Index < 0 || column.Index >= _active.Length || !_active[column.Index])
            {
                throw new InvalidOperationException($"Column '{column.Name}' is not active in this cursor.");
            }

            if (_parent._columnGetters[column.Index] is not RowValueGetter<TValue> getter)
            {
                throw new InvalidOperationException(
                    $"Column '{column.Name}' has type {Schema[column.Index].Type}, raw type {Schema[column.Index].Type.RawType}; it cannot be read as {typeof(TValue)}.");
            }

            return (ref TValue value) =>
            {
                EnsureOnRow();
                getter(_row, ref value);
            };
        }

        public override ValueGetter<DataViewRowId> GetIdGetter()
            => (ref DataViewRowId value) =>
            {
                EnsureOnRow();
                value = new DataViewRowId((ulong)_row, 0);
            };

        private void EnsureOnRow()
        {
            if (_row < 0)
            {
                throw new InvalidOperationException("The cursor is not on a row: call MoveNext first, and only while it returns true.");
            }
        }
    }
}
