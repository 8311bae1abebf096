//! Where a joining member goes: a pure function over the channel's rooms and their sizes.
//!
//! A channel's chat is split into rooms of about `capacity` members (Justin.tv's social groups of
//! a few hundred rather than one room of everyone). A joiner goes to the lowest-numbered room with
//! space, so rooms fill one by one and a room emptied by departures fills again first; when every
//! room is full a new one opens with the lowest free number. A link may ask for a room (friends
//! who want to sit together): it is honoured while the room holds fewer than
//! `capacity + capacity / 4` (a room with friends may run a quarter over), or when the room does
//! not exist yet and its number is at most one past the highest room.

/// The room a joiner goes to. `rooms`: each existing room's number (1, 2, …) and member count, in
/// any order; `requested`: the room the joiner asked for, if any. `capacity` ≥ 1.
pub fn place(rooms: &[(u32, usize)], capacity: usize, requested: Option<u32>) -> u32 {
    place_where(rooms, capacity, requested, |_| true).unwrap_or(1)
}

/// Rooms past the highest existing one that [`place_where`] looks at for a new room it may open.
const NEW_ROOM_SEARCH: u32 = 1024;

/// [`place`] among the rooms `allowed` says this placement may use (in a cluster: the rooms this
/// node hosts or would host, [`crate::placement`]): the requested room when allowed and with
/// space as in [`place`], else the lowest-numbered allowed room with space, else the lowest
/// allowed number that is not a room yet. `None` when no allowed room is found within
/// 1,024 numbers past the highest room.
pub fn place_where(rooms: &[(u32, usize)], capacity: usize, requested: Option<u32>, allowed: impl Fn(u32) -> bool) -> Option<u32> {
    let capacity = capacity.max(1);
    let highest = rooms.iter().map(|(n, _)| *n).max().unwrap_or(0);
    if let Some(want) = requested.filter(|&r| r >= 1 && allowed(r)) {
        match rooms.iter().find(|(n, _)| *n == want) {
            Some(&(_, count)) if count < capacity + capacity / 4 => return Some(want),
            None if want <= highest + 1 => return Some(want),
            _ => {}
        }
    }
    let mut with_space: Vec<u32> = rooms.iter().filter(|(n, c)| *c < capacity && allowed(*n)).map(|(n, _)| *n).collect();
    with_space.sort_unstable();
    if let Some(&room) = with_space.first() {
        return Some(room);
    }
    (1..=highest.saturating_add(NEW_ROOM_SEARCH)).find(|n| !rooms.iter().any(|(r, _)| r == n) && allowed(*n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_fill_one_by_one_and_gaps_first() {
        let mut rooms: Vec<(u32, usize)> = Vec::new();
        for _ in 0..600 {
            let r = place(&rooms, 200, None);
            match rooms.iter_mut().find(|(n, _)| *n == r) {
                Some((_, c)) => *c += 1,
                None => rooms.push((r, 1)),
            }
        }
        assert_eq!(rooms, vec![(1, 200), (2, 200), (3, 200)]);
        // Ten leave room 2: the next joiners fill it before opening room 4.
        rooms[1].1 -= 10;
        assert_eq!(place(&rooms, 200, None), 2);
        rooms[1].1 += 10;
        assert_eq!(place(&rooms, 200, None), 4);
        // Room 1 emptied and closed: a new room takes the lowest free number.
        assert_eq!(place(&[(2, 200), (3, 200)], 200, None), 1);
    }

    #[test]
    fn a_requested_room_is_honoured_up_to_a_quarter_over() {
        let rooms = [(1, 200), (2, 120)];
        assert_eq!(place(&rooms, 200, Some(1)), 1);
        assert_eq!(place(&[(1, 249), (2, 0)], 200, Some(1)), 1);
        assert_eq!(place(&[(1, 250), (2, 0)], 200, Some(1)), 2);
        // A room one past the highest may be opened; a far one may not.
        assert_eq!(place(&rooms, 200, Some(3)), 3);
        assert_eq!(place(&rooms, 200, Some(9)), 2);
        assert_eq!(place(&rooms, 200, Some(0)), 2);
        // A small channel is one room.
        assert_eq!(place(&[], 200, None), 1);
    }

    #[test]
    fn placement_keeps_to_the_allowed_rooms() {
        let odd = |n: u32| n % 2 == 1;
        // Room 2 has space but is not allowed: the next allowed free number opens.
        assert_eq!(place_where(&[(1, 200), (2, 10)], 200, None, odd), Some(3));
        assert_eq!(place_where(&[(1, 200), (2, 10), (3, 5)], 200, None, odd), Some(3));
        // A requested room that is not allowed is not honoured.
        assert_eq!(place_where(&[(1, 10), (2, 10)], 200, Some(2), odd), Some(1));
        // Nothing allowed within reach.
        assert_eq!(place_where(&[(1, 10)], 200, None, |_| false), None);
    }
}
